"""The built-in arena programs: tiny syscall programs that call the arena kfuncs.

User space has no system call to allocate arena pages; BPF does, through the kfuncs
bpf_arena_alloc_pages / bpf_arena_free_pages / bpf_arena_reserve_pages. Each program here takes
its arguments from the syscall program's context (a user buffer that BPF_PROG_TEST_RUN copies in
and back out), calls one kfunc and stores the result back into the context. They are assembled
with `bpfarena.isa.asm`, loaded sleepable (the kfuncs are sleepable-only up to Linux 6.19) and
run with BPF_PROG_TEST_RUN, so every result is the kernel's own.
"""

from __future__ import annotations

import errno
import struct
import threading
from collections.abc import Sequence
from functools import lru_cache

from .. import _sys
from ..errors import ArenaError, BPFError, NotSupportedError, VerifierError
from ..isa.asm import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Assembler
from ..isa.insn import encode
from .diagnose import diagnose
from .kfuncs import kfunc_id

BPF_PROG_TYPE_SYSCALL = 31
BPF_F_SLEEPABLE = 16

ALLOC = "bpf_arena_alloc_pages"
FREE = "bpf_arena_free_pages"
RESERVE = "bpf_arena_reserve_pages"


_ALLOC_CTX = struct.Struct("<QQqQ")  # addr hint, page count, node, result
_PAGES_CTX = struct.Struct("<QQ")  # addr, page count  (+ result for reserve: retval)


def load_syscall_prog(asm: Assembler, name: str, log_level: int = 0) -> _sys.ProgFd:
    """Load an assembled sleepable syscall program (GPL: the arena kfuncs need it)."""
    return _sys.prog_load(BPF_PROG_TYPE_SYSCALL, encode(asm.assemble()), "GPL", name=name,
                          prog_flags=BPF_F_SLEEPABLE, log_level=log_level)


_PAGES_ARGS = (("dw", 0), ("w", 8))  # (addr, page count) loaded from ctx


def _kfunc_prog(map_fd: int, kfunc: str, args: Sequence[tuple[str, int] | int], *,
                store_at: int | None = None, returns: bool = False) -> Assembler:
    """`kfunc(arena, args...)`: each arg is a ctx field (size, offset) or a constant, in R2...

    The kfunc's result is stored at ctx+store_at (if given), and is the program's return value
    only with `returns` (otherwise the program returns 0).
    """
    a = Assembler()
    ctx = R1
    if store_at is not None:
        a.mov64(R6, R1)  # ctx survives the call in a callee-saved register
        ctx = R6
    for reg, arg in zip((R2, R3, R4, R5), args, strict=False):
        if isinstance(arg, int):
            a.mov64(reg, arg)
        else:
            a.ldx(arg[0], reg, ctx, arg[1])
    a.ld_map_fd(R1, map_fd)
    a.call_kfunc(kfunc_id(kfunc))
    if store_at is not None:
        a.stx("dw", R6, R0, store_at)
    if not returns:
        a.mov64(R0, 0)
    a.exit_()
    return a


def alloc_prog(map_fd: int) -> Assembler:
    """ctx (addr hint, page count, node, result): result = alloc(addr, cnt, node, flags 0)."""
    return _kfunc_prog(map_fd, ALLOC, (*_PAGES_ARGS, ("dw", 16), 0), store_at=24)


def free_prog(map_fd: int) -> Assembler:
    """ctx (addr, page count): free those pages."""
    return _kfunc_prog(map_fd, FREE, _PAGES_ARGS)


def reserve_prog(map_fd: int) -> Assembler:
    """ctx (addr, page count): returns the kfunc's int result as the program's return value."""
    return _kfunc_prog(map_fd, RESERVE, _PAGES_ARGS, returns=True)


# kernel layout facts for the page-presence probe (ARENA_FACTS.md §2): BPF reaches arena byte
# `u` at kern_vm_start + (u32)u, and kern_vm_start = kern_vm->addr + GUARD_SZ / 2
GUARD_SZ = 1 << 16  # round_up(2^16, 2 * PAGE_SIZE) with 4 KiB pages
PROBE_READ_KERNEL = 113
ITER_NEW, ITER_NEXT, ITER_DESTROY = "bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"
COUNT_CHUNK = 1 << 16  # pages counted per run of the counting program

_COUNT_CTX = struct.Struct("<IIq")  # (u32)address of the first page, page count, result


@lru_cache(maxsize=1)
def arena_offsets() -> tuple[int, int]:
    """(offsetof(struct bpf_arena, kern_vm), offsetof(struct vm_struct, addr)) from vmlinux BTF."""
    from .kfuncs import vmlinux_btf

    btf = vmlinux_btf()
    try:
        kern_vm = btf.offsetof(btf.find("bpf_arena", "struct"), "kern_vm")
        addr = btf.offsetof(btf.find("vm_struct", "struct"), "addr")
    except (KeyError, BPFError) as e:
        raise NotSupportedError("arena page counting", f"the kernel's BTF has no struct "
                                f"bpf_arena.kern_vm / vm_struct.addr ({e})") from None
    return kern_vm, addr


def count_prog(map_fd: int) -> Assembler:
    """Count the arena pages present in the kernel's mapping, without touching the arena.

    ctx = (lo32, n, result): result = how many of the n pages whose user addresses have low 32
    bits lo32, lo32 + 4096, ... (wrapping) are mapped in the arena's kernel area, or a negative
    errno. A page is present exactly when a 1-byte bpf_probe_read_kernel of it succeeds (it
    fails with -EFAULT on a hole), so nothing is reserved, allocated or freed: unlike reserve
    probing this leaves the free-range tree alone, and it does not count reservations.

    The map pointer cannot take pointer arithmetic, so the start of struct bpf_arena up to
    kern_vm is copied to the stack with bpf_probe_read_kernel, which takes any value as source.
    """
    kern_vm_off, addr_off = arena_offsets()
    buf = (kern_vm_off + 8 + 7) & ~7
    if buf > 480:
        raise NotSupportedError("arena page counting", f"struct bpf_arena.kern_vm is at byte "
                                f"{kern_vm_off}: too far in to copy onto the BPF stack")
    a = Assembler()
    a.mov64(R6, R1)
    # kern_vm = ((struct bpf_arena *)map)->kern_vm
    a.mov64(R1, R10)
    a.add64(R1, -buf)
    a.mov64(R2, buf)
    a.ld_map_fd(R3, map_fd)
    a.call_helper(PROBE_READ_KERNEL)
    a.jne(R0, 0, "fail")
    a.ldx("dw", R3, R10, -buf + kern_vm_off)
    # kern_vm_start = kern_vm->addr + GUARD_SZ / 2
    a.add64(R3, addr_off)
    a.mov64(R1, R10)
    a.add64(R1, -8)
    a.mov64(R2, 8)
    a.call_helper(PROBE_READ_KERNEL)
    a.jne(R0, 0, "fail")
    a.ldx("dw", R1, R10, -8)
    a.add64(R1, GUARD_SZ // 2)
    # an open-coded numeric iterator over [0, n): the verifier checks the body once, not n times
    a.mov64(R8, R1)  # kern_vm_start
    a.ldx("w", R9, R6, 0)  # lo32
    a.mov64(R7, 0)  # count
    a.mov64(R1, R10)
    a.add64(R1, -16)
    a.mov32(R2, 0)
    a.ldx("w", R3, R6, 4)
    a.call_kfunc(kfunc_id(ITER_NEW))
    a.label("next")
    a.mov64(R1, R10)
    a.add64(R1, -16)
    a.call_kfunc(kfunc_id(ITER_NEXT))
    a.jeq(R0, 0, "done")
    # the page is present when probe_read_kernel(kern_vm_start + (u32)(lo32 + i * 4096)) works
    a.ldx("w", R3, R0, 0)
    a.lsh32(R3, 12)
    a.add32(R3, R9)
    a.add64(R3, R8)
    a.mov64(R1, R10)
    a.add64(R1, -24)
    a.mov64(R2, 1)
    a.call_helper(PROBE_READ_KERNEL)
    a.jne(R0, 0, "next")
    a.add64(R7, 1)
    a.ja("next")
    a.label("done")
    a.mov64(R1, R10)
    a.add64(R1, -16)
    a.call_kfunc(kfunc_id(ITER_DESTROY))
    a.mov64(R0, R7)
    a.label("fail")
    a.stx("dw", R6, R0, 8)
    a.mov64(R0, 0)
    a.exit_()
    return a


def user_vm_start_prog(map_fd: int) -> Assembler:
    """ld_imm64 of the arena's map value (src 2, off 0): the kernel patches in user_vm_start."""
    a = Assembler()
    a.mov64(R6, R1)
    a.ld_map_value(R1, map_fd, 0)
    a.stx("dw", R6, R1, 0)
    a.mov64(R0, 0)
    a.exit_()
    return a


def probe_user_vm_start(map_fd: _sys.Fd | int) -> int | None:
    """The address an arena's user mapping is fixed at, or None while nobody has mapped it."""
    fd = map_fd if isinstance(map_fd, int) else map_fd.fileno()
    try:
        prog = load_syscall_prog(user_vm_start_prog(fd), "arena_uvs")
    except VerifierError as e:
        if e.errno == errno.EINVAL and "user address must be set" in e.log:
            return None
        raise
    with prog:
        ctx = bytearray(8)
        _sys.prog_test_run_ctx_inout(prog, ctx)
    return int.from_bytes(ctx, "little") or None


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class ArenaPrograms:
    """The kfunc programs of one arena, each loaded on first use and kept until close()."""

    def __init__(self, map_fd: _sys.Fd) -> None:
        self._map_fd = map_fd
        self._progs: dict[str, _sys.ProgFd] = {}
        self._lock = threading.Lock()

    def _prog(self, which: str) -> _sys.ProgFd:
        p = self._progs.get(which)
        if p is not None:
            return p
        with self._lock:
            return self._load(which)

    def _load(self, which: str) -> _sys.ProgFd:
        p = self._progs.get(which)
        if p is None:
            build = {"alloc": alloc_prog, "free": free_prog, "reserve": reserve_prog,
                     "count": count_prog}[which]
            try:
                p = load_syscall_prog(build(self._map_fd.fileno()), f"arena_{which}")
            except VerifierError as e:
                if e.errno == errno.EPERM:
                    d = diagnose()
                    if d is not None:
                        raise d.error() from None
                    raise NotSupportedError(f"arena {which} program",
                                            "loading it needs CAP_BPF and CAP_PERFMON",
                                            errno=e.errno) from None
                raise
            self._progs[which] = p
        return p

    def alloc(self, addr: int, count: int, node: int) -> int:
        ctx = bytearray(_ALLOC_CTX.pack(addr & (1 << 64) - 1, count, node, 0))
        _sys.prog_test_run_ctx_inout(self._prog("alloc"), ctx)
        return _ALLOC_CTX.unpack(ctx)[3]

    def free(self, addr: int, count: int) -> None:
        ctx = bytearray(_PAGES_CTX.pack(addr & (1 << 64) - 1, count))
        _sys.prog_test_run_ctx_inout(self._prog("free"), ctx)

    def reserve(self, addr: int, count: int) -> int:
        ctx = bytearray(_PAGES_CTX.pack(addr & (1 << 64) - 1, count))
        return _s32(_sys.prog_test_run_ctx_inout(self._prog("reserve"), ctx))

    def resident_pages(self, max_pages: int, user_vm_start: int) -> int:
        """How many of the arena's pages are allocated right now (by BPF or by user faults).

        Read-only: each page of the kernel's mapping is probed in place (see count_prog), in
        chunks so one run stays short. Reservations without a page do not count. Pages allocated
        or freed concurrently may or may not be seen, but nothing else is disturbed.
        """
        from ..arena.layout import PAGE_SIZE

        prog = self._prog("count")
        total = 0
        for first in range(0, max_pages, COUNT_CHUNK):
            n = min(COUNT_CHUNK, max_pages - first)
            ctx = bytearray(_COUNT_CTX.pack((user_vm_start + first * PAGE_SIZE) & 0xFFFFFFFF,
                                            n, 0))
            _sys.prog_test_run_ctx_inout(prog, ctx)
            rc = _COUNT_CTX.unpack(ctx)[2]
            if rc < 0:
                raise ArenaError(f"counting arena pages [{first}, {first + n}) failed", -rc)
            total += rc
        return total

    def close(self) -> None:
        for p in self._progs.values():
            p.close()
        self._progs.clear()
