"""What the running kernel supports for arenas, each found by a real probe (never a version check).

Probes create a throw-away arena or load a tiny program and look at what the kernel says. Results
are cached for the life of the process. Every "no" has a reason (`why(name)`). Whether arenas can
be used at all, and why not, is `diagnose.diagnose()`; `arenas_available()` and `why_unavailable()`
are its short forms, never raise, and are what tests and `load(backend="auto")` ask first.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from .. import _sys
from .._sys import mem
from ..arena import layout
from ..errors import BPFError, SyscallError, _errname
from .diagnose import JIT_SYSCTL, diagnose, jit_setting

__all__ = ["features", "arenas_available", "why_unavailable", "probe"]

BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_SOCKET_FILTER = 1

_lock = threading.RLock()
_reasons: dict[str, str] = {}


def _create_arena(flags: int = 0, pages: int = 1) -> _sys.Fd:
    return _sys.map_create(layout.BPF_MAP_TYPE_ARENA, 0, 0, pages,
                           flags=layout.BPF_F_MMAPABLE | flags)


def _errtext(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _probe_arena_map() -> bool:
    """Can an arena map be created and mapped? (The diagnosis may fail later, for BTF or a JIT.)"""
    d = diagnose()
    if d is None or d.map_works:
        return True
    _reasons["arena_map"] = d.detail
    return False


def _needs_arena_map(name: str) -> bool:
    """False (with the arena map's reason) where no arena can be made, so `name` is not probed."""
    if _probe_arena_map():
        return True
    _reasons[name] = _not_probed()
    return False


def _needs_arenas(name: str) -> bool:
    """False (with the diagnosis) where arena programs cannot load, so `name` is not probed."""
    if diagnose() is None:
        return True
    _reasons[name] = _not_probed()
    return False


def _not_probed() -> str:
    d = diagnose()
    return f"not probed: kernel arenas are unavailable ({d.cause.value if d else '?'}, see arena_map)"


def _probe_flag(name: str, flag: int) -> bool:
    if not _needs_arena_map(name):
        return False
    try:
        _create_arena(flag).close()
        return True
    except SyscallError as e:
        _reasons[name] = f"an arena with {name} was refused with {_errname(e.errno)}"
        return False


class _MappedArena:
    """A 1-page arena mapped here, so programs referencing it may load (user_vm_start is set)."""

    def __enter__(self) -> _sys.Fd:
        self.fd = _create_arena()
        try:
            self.addr = mem.mmap(None, layout.PAGE_SIZE, mem.PROT_READ | mem.PROT_WRITE,
                                 mem.MAP_SHARED, self.fd.fileno())
        except BaseException:
            self.fd.close()
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        mem.munmap(self.addr, layout.PAGE_SIZE)
        self.fd.close()


def _load_probe(name: str, build: Callable[[int], object]) -> bool:
    """True if a program built around a fresh mapped arena loads."""
    from .progs import load_syscall_prog

    if not _needs_arenas(name):
        return False
    try:
        with _MappedArena() as fd:
            load_syscall_prog(build(fd.fileno()), name[:15]).close()  # type: ignore[arg-type]
        return True
    except BPFError as e:
        _reasons[name] = _errtext(e)
        return False
    except Exception as e:  # never raise from a probe
        _reasons[name] = repr(e)
        return False


def _kfunc_probe(kfunc: str, build_name: str) -> bool:
    from . import progs
    from .kfuncs import find_kfunc

    feat = f"kfunc_{kfunc}"
    try:
        if find_kfunc(kfunc) is None:
            _reasons[feat] = f"{kfunc} is not in the kernel's BTF"
            return False
    except BPFError as e:
        _reasons[feat] = _errtext(e)
        return False
    return _load_probe(feat, getattr(progs, build_name))


def _probe_addr_space_cast() -> bool:
    from ..isa.asm import R0, R1, Assembler

    def build(fd: int) -> Assembler:
        a = Assembler()
        a.ld_map_fd(R1, fd)  # the reference that associates the arena with the program
        a.mov64(R0, 0)
        a.cast_user(R0, R0)
        a.cast_kern(R0, R0)
        a.mov64(R0, 0)
        a.exit_()
        return a

    return _load_probe("addr_space_cast", build)


def _probe_globals_at_end() -> bool:
    """libbpf 1.7's FEAT_LDIMM64_FULL_RANGE_OFF: may an ld_imm64 map-value offset reach 1<<30?

    An array map with a tiny value makes the load fail either way; what matters is why. A kernel
    that caps direct value offsets (before 7.0) says "direct value offset of ... is not allowed".
    """
    from ..isa.asm import R0, R1, Assembler
    from ..isa.insn import encode

    name = "arena_globals_at_end"
    try:
        with _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1) as fd:
            a = Assembler()
            a.ld_map_value(R1, fd.fileno(), 1 << 30)
            a.mov64(R0, 0)
            a.exit_()
            try:
                _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, encode(a.assemble()), "GPL",
                               name="probe_ldimm64", log_level=1).close()
                return True
            except BPFError as e:
                log = getattr(e, "log", "")
                if "direct value offset" in log:
                    _reasons[name] = ("the verifier caps ld_imm64 map-value offsets below 512 MiB "
                                      "(lifted in Linux 7.0): arena globals go at the start")
                    return False
                if getattr(e, "errno", None) == errno.EPERM:
                    _reasons[name] = _errtext(e)
                    return False
                return True
    except BPFError as e:
        _reasons[name] = _errtext(e)
        return False


def _jit_enabled() -> bool:
    setting = jit_setting()
    if setting is None:
        _reasons["jit_enabled"] = f"cannot read {JIT_SYSCTL}"
        return False
    if setting == "0":
        _reasons["jit_enabled"] = "net.core.bpf_jit_enable is 0: programs are interpreted"
        return False
    return True


_PROBES: dict[str, Callable[[], bool | str]] = {
    "kernel_release": lambda: os.uname().release,
    "arena_map": _probe_arena_map,
    "BPF_F_SEGV_ON_FAULT": lambda: _probe_flag("BPF_F_SEGV_ON_FAULT",
                                               layout.BPF_F_SEGV_ON_FAULT),
    "BPF_F_NO_USER_CONV": lambda: _probe_flag("BPF_F_NO_USER_CONV", layout.BPF_F_NO_USER_CONV),
    "kfunc_bpf_arena_alloc_pages": lambda: _kfunc_probe("bpf_arena_alloc_pages", "alloc_prog"),
    "kfunc_bpf_arena_free_pages": lambda: _kfunc_probe("bpf_arena_free_pages", "free_prog"),
    "kfunc_bpf_arena_reserve_pages": lambda: _kfunc_probe("bpf_arena_reserve_pages",
                                                          "reserve_prog"),
    "addr_space_cast": _probe_addr_space_cast,
    "arena_globals_at_end": _probe_globals_at_end,
    "jit_enabled": _jit_enabled,
}

_cache: dict[str, bool | str] = {}


def probe(name: str) -> bool | str:
    """One feature by name (cached); False (with a reason in why(name)) if a probe breaks."""
    with _lock:
        if name not in _cache:
            try:
                _cache[name] = _PROBES[name]()
            except KeyError:
                raise
            except Exception as e:  # a broken probe is a missing feature, not a crash
                _reasons[name] = repr(e)
                _cache[name] = False
        return _cache[name]


def features() -> dict[str, bool | str]:
    """Every feature bpfarena cares about, probed on this kernel (cached)."""
    return {name: probe(name) for name in _PROBES}


def why(name: str) -> str | None:
    """Why a probed feature is missing (None if present or not probed)."""
    return _reasons.get(name) if probe(name) is False else None


def arenas_available() -> bool:
    """True when this process can create, map and use kernel arenas. Never raises."""
    return diagnose() is None


def why_unavailable() -> str | None:
    """Why kernel arenas cannot be used here (the one diagnosis), or None if they can."""
    d = diagnose()
    return None if d is None else str(d)
