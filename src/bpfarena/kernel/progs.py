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

from .. import _sys
from ..errors import ArenaError, NotSupportedError, VerifierError
from ..isa.asm import R0, R1, R2, R3, R4, R5, R6, Assembler
from ..isa.insn import encode
from .kfuncs import kfunc_id

BPF_PROG_TYPE_SYSCALL = 31
BPF_F_SLEEPABLE = 16

ALLOC = "bpf_arena_alloc_pages"
FREE = "bpf_arena_free_pages"
RESERVE = "bpf_arena_reserve_pages"

PROBE_BATCH = 256  # ranges probed per run of the busy-page program (16 bytes each in ctx)
PROBE_SPLIT = 4  # a busy range is split into this many parts per level

_ALLOC_CTX = struct.Struct("<QQqQ")  # addr hint, page count, node, result
_PAGES_CTX = struct.Struct("<QQ")  # addr, page count  (+ result for reserve: retval)
_PROBE_ENT = struct.Struct("<QIi")  # addr, page count, reserve result


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


def probe_prog(map_fd: int, n: int = PROBE_BATCH) -> Assembler:
    """For each of n ctx entries (addr, cnt, result): result = reserve(addr, cnt); when that
    succeeded (the whole range was free), free the range again so nothing is left reserved."""
    reserve, free = kfunc_id(RESERVE), kfunc_id(FREE)
    a = Assembler()
    a.mov64(R6, R1)
    for i in range(n):
        o = i * _PROBE_ENT.size
        skip = f"skip{i}"
        a.ldx("w", R3, R6, o + 8)
        a.jeq(R3, 0, skip)
        a.ldx("dw", R2, R6, o)
        a.ld_map_fd(R1, map_fd)
        a.call_kfunc(reserve)
        a.stx("w", R6, R0, o + 12)
        a.jne32(R0, 0, skip)
        a.ldx("dw", R2, R6, o)
        a.ldx("w", R3, R6, o + 8)
        a.ld_map_fd(R1, map_fd)
        a.call_kfunc(free)
        a.label(skip)
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
                     "probe": probe_prog}[which]
            try:
                p = load_syscall_prog(build(self._map_fd.fileno()), f"arena_{which}")
            except VerifierError as e:
                if e.errno == errno.EPERM:
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

    def probe(self, ranges: list[tuple[int, int]]) -> list[int]:
        """reserve() results for each (address, page count); ranges found free are freed again."""
        prog = self._prog("probe")
        out: list[int] = []
        for i in range(0, len(ranges), PROBE_BATCH):
            chunk = ranges[i:i + PROBE_BATCH]
            ctx = bytearray(PROBE_BATCH * _PROBE_ENT.size)
            for j, (addr, cnt) in enumerate(chunk):
                _PROBE_ENT.pack_into(ctx, j * _PROBE_ENT.size, addr, cnt, 0)
            _sys.prog_test_run_ctx_inout(prog, ctx)
            out.extend(_PROBE_ENT.unpack_from(ctx, j * _PROBE_ENT.size)[2]
                       for j in range(len(chunk)))
        return out

    def busy_pages(self, max_pages: int, user_vm_start: int) -> int:
        """How many of the arena's pages are allocated or reserved right now.

        Divide and conquer with reserve-probing: reserve(range) succeeds only when every page in
        it is free (the range is then freed again at once), so a busy range is split until its
        parts are free or single pages. Not atomic against concurrent allocators: a page another
        thread or process allocates or touches in the middle of a probe may be missed or, for a
        user touch inside a just-reserved range, dropped again by the probe's free.
        """
        from ..arena.layout import PAGE_SIZE

        total = 0
        level = [(0, max_pages)]
        while level:
            rs = self.probe([(user_vm_start + lo * PAGE_SIZE, hi - lo) for lo, hi in level])
            nxt = []
            for (lo, hi), rc in zip(level, rs, strict=True):
                if rc == 0:
                    continue
                if rc != -errno.EBUSY:
                    raise ArenaError(f"reserve probe of pages [{lo}, {hi}) failed", -rc)
                if hi - lo == 1:
                    total += 1
                    continue
                step = -(-(hi - lo) // PROBE_SPLIT)
                nxt.extend((s, min(s + step, hi)) for s in range(lo, hi, step))
            level = nxt
        return total

    def close(self) -> None:
        for p in self._progs.values():
            p.close()
        self._progs.clear()
