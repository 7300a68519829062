"""kfunc BTF ids from the running kernel's BTF (/sys/kernel/btf/vmlinux), parsed once and cached.

A kfunc call is `call` with src_reg 2 (BPF_PSEUDO_KFUNC_CALL) and imm = the id of its BTF_KIND_FUNC
in vmlinux BTF; the ids change with every kernel build, so they are looked up, never hard-coded.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import BPFError, NotSupportedError

if TYPE_CHECKING:  # pragma: no cover
    from ..btf import BTF

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_KIND_FUNC = 12

ARENA_KFUNCS = ("bpf_arena_alloc_pages", "bpf_arena_free_pages", "bpf_arena_reserve_pages")

_lock = threading.Lock()
_ids: dict[str, int | None] = {}


@lru_cache(maxsize=1)
def vmlinux_btf() -> BTF:
    """The parsed kernel BTF (NotSupportedError if the kernel has none)."""
    from ..btf import parse_file

    try:
        return parse_file(VMLINUX_BTF)
    except BPFError as e:
        raise NotSupportedError("kernel BTF", f"cannot read {VMLINUX_BTF} ({e}); the kernel needs "
                                "CONFIG_DEBUG_INFO_BTF=y") from None


def find_kfunc(name: str) -> int | None:
    """The vmlinux BTF id of FUNC `name`, or None if this kernel has no such function."""
    with _lock:
        if name in _ids:
            return _ids[name]
    try:
        tid: int | None = vmlinux_btf().find(name, BTF_KIND_FUNC)
    except KeyError:
        tid = None
    with _lock:
        _ids[name] = tid
    return tid


def kfunc_id(name: str) -> int:
    """The vmlinux BTF id of kfunc `name`; NotSupportedError naming it if it does not exist."""
    tid = find_kfunc(name)
    if tid is None:
        hint = {"bpf_arena_reserve_pages": "6.17", "bpf_arena_alloc_pages": "6.9",
                "bpf_arena_free_pages": "6.9"}.get(name)
        raise NotSupportedError(f"kfunc {name}", "not found in the kernel's BTF", min_kernel=hint)
    return tid
