"""Helpers and kfuncs of the VM, bound to one loaded collection.

Each helper takes the five argument registers (some also the caller's frame pointer) and returns
the new r0 as an unsigned 64-bit int, with negative errnos as the kernel returns them. Only the
helpers listed in HELPERS (and the arena kfuncs) exist; any other id or name is refused at load
time with NotSupportedError, naming it.
"""

from __future__ import annotations

import errno
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import MemoryFault, VMError
from .memory import FUNC_HANDLE_BASE, KSPACE, M64, U32, Memory

if TYPE_CHECKING:  # pragma: no cover
    from .arena import VMArena
    from .maps import VMMap

HELPERS = {
    1: "map_lookup_elem", 2: "map_update_elem", 3: "map_delete_elem", 5: "ktime_get_ns",
    6: "trace_printk", 7: "get_prandom_u32", 8: "get_smp_processor_id",
    14: "get_current_pid_tgid", 15: "get_current_uid_gid", 16: "get_current_comm",
    160: "ktime_get_coarse_ns", 177: "trace_vprintk", 93: "spin_lock",
    94: "spin_unlock", 113: "probe_read_kernel", 115: "probe_read_kernel_str",
    125: "ktime_get_boot_ns", 181: "loop", 195: "map_lookup_percpu_elem",
}
NEEDS_FP = {181}
KFUNCS = ("bpf_arena_alloc_pages", "bpf_arena_free_pages", "bpf_arena_reserve_pages")

BPF_LOOP_MAX = 1 << 23
MAX_VARARGS = 12  # MAX_BPRINTF_VARARGS
MAX_OUTPUT = 1 << 20  # printk text kept per run; the rest is dropped (the kernel's ring drops too)


def _neg(e: int) -> int:
    return (-e) & M64


class Runtime:
    """State the helpers share during runs: maps by handle, the printk buffer, the callbacks."""

    def __init__(self, memory: Memory, maps: dict[int, VMMap], arena: VMArena | None,
                 arena_handle: int | None, seed: int | None = None) -> None:
        self.memory = memory
        self.maps = maps
        self.arena = arena
        self.arena_handle = arena_handle
        self.output: list[str] = []
        self.output_size = 0
        self.funcs: dict[int, Callable[..., int]] = {}
        self.rng = random.Random(seed)

    def _map(self, handle: int, what: str) -> VMMap:
        m = self.maps.get(handle)
        if m is None:
            raise VMError(f"{what}: r1 (0x{handle:x}) is not a map")
        return m

    # --- map helpers --------------------------------------------------------------------------------
    def map_lookup_elem(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, "bpf_map_lookup_elem")
        return m.value_addr(self.memory.read(r2, m.key_size))

    def map_lookup_percpu_elem(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, "bpf_map_lookup_percpu_elem")
        if r3 & U32:  # the VM has one CPU
            return 0
        return m.value_addr(self.memory.read(r2, m.key_size))

    def map_update_elem(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, "bpf_map_update_elem")
        if m.readonly:
            raise MemoryFault("bpf_map_update_elem on a read-only map", region=f"map {m.name!r}")
        key = self.memory.read(r2, m.key_size)
        val = self.memory.read(r3, m.value_size)
        return m.update_raw(key, val, r4) & M64

    def map_delete_elem(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, "bpf_map_delete_elem")
        return m.delete_raw(self.memory.read(r2, m.key_size)) & M64

    # --- time, randomness, cpu ------------------------------------------------------------------------
    def ktime_get_ns(self, *_: int) -> int:
        return time.monotonic_ns() & M64

    def ktime_get_boot_ns(self, *_: int) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) & M64

    def get_prandom_u32(self, *_: int) -> int:
        return self.rng.getrandbits(32)

    def get_smp_processor_id(self, *_: int) -> int:
        return 0

    # --- the current task: a test run executes in the caller's context, so it is this thread
    def get_current_pid_tgid(self, *_: int) -> int:
        return (os.getpid() << 32) | threading.get_native_id()

    def get_current_uid_gid(self, *_: int) -> int:
        return (os.getgid() << 32) | os.getuid()

    def get_current_comm(self, r1: int, r2: int, *_: int) -> int:
        n = r2 & U32
        if n == 0:
            return _neg(errno.EINVAL)
        try:
            with open(f"/proc/self/task/{threading.get_native_id()}/comm", "rb") as f:
                comm = f.read().rstrip(b"\n")[:15]
        except OSError:
            comm = b"python3"
        self.memory.write(r1, (comm[:n - 1] + b"\0").ljust(n, b"\0"))
        return 0

    def ktime_get_coarse_ns(self, *_: int) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC_COARSE) & M64

    def spin_lock(self, *_: int) -> int:
        return 0  # one CPU, no preemption: a lock is always free

    spin_unlock = spin_lock

    # --- memory copies ------------------------------------------------------------------------------
    def probe_read_kernel(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        n = r2 & U32
        try:
            data = self.memory.read(r3, n)
        except MemoryFault:
            self.memory.write(r1, bytes(n))
            return _neg(errno.EFAULT)
        self.memory.write(r1, data)
        return 0

    def probe_read_kernel_str(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        n = r2 & U32
        if n == 0:
            return 0
        s, ok = self.memory.read_cstr(r3, n - 1)
        if not ok and not s:
            self.memory.write(r1, b"\0")
            return _neg(errno.EFAULT)
        self.memory.write(r1, s + b"\0")
        return len(s) + 1

    # --- bpf_loop -----------------------------------------------------------------------------------
    def loop(self, r1: int, r2: int, r3: int, r4: int, r5: int, fp: int) -> int:
        nr = r1 & U32
        if r4:
            return _neg(errno.EINVAL)
        if nr > BPF_LOOP_MAX:
            return _neg(errno.E2BIG)
        fn = self.funcs.get(r2 - FUNC_HANDLE_BASE) if r2 >= FUNC_HANDLE_BASE else None
        if fn is None:
            raise VMError(f"bpf_loop: r2 (0x{r2:x}) is not a callback function")
        below = fp - 512
        for i in range(nr):
            if fn(i, r3, 0, 0, 0, below):
                return i + 1
        return nr

    # --- trace_printk -------------------------------------------------------------------------------
    def trace_printk(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        size = r2 & U32
        if size == 0:
            return _neg(errno.EINVAL)
        raw = self.memory.read(r1, size)
        if raw[-1] != 0:
            return _neg(errno.EINVAL)
        return self._printk(raw[:raw.index(0)], [r3, r4, r5])

    def _printk(self, fmt: bytes, args: list[int]) -> int:
        try:
            text = format_printk(fmt, args, self.memory)
        except ValueError:
            return _neg(errno.EINVAL)
        if self.output_size < MAX_OUTPUT:
            line = text if text.endswith("\n") else text + "\n"
            self.output.append(line)
            self.output_size += len(line)
        return len(text.encode("latin-1", "replace"))

    def trace_vprintk(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        """bpf_trace_vprintk(fmt, fmt_size, args, args_len): up to 12 u64 arguments in memory."""
        size, n = r2 & U32, r4 & U32
        if size == 0 or n % 8 or n > 8 * MAX_VARARGS or (n and not r3):
            return _neg(errno.EINVAL)
        raw = self.memory.read(r1, size)
        if raw[-1] != 0:
            return _neg(errno.EINVAL)
        data = self.memory.read(r3, n) if n else b""
        args = [int.from_bytes(data[i:i + 8], "little") for i in range(0, n, 8)]
        return self._printk(raw[:raw.index(0)], args)

    # --- arena kfuncs -------------------------------------------------------------------------------
    def bpf_arena_alloc_pages(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        if r1 != self.arena_handle or self.arena is None:
            return 0
        node = (r4 & U32) - ((r4 & 0x80000000) << 1)
        return self.arena.alloc(r3 & U32, r2, node, r5) & M64

    def bpf_arena_free_pages(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        if r1 == self.arena_handle and self.arena is not None and r3 & U32 and r2:
            self.arena.free(r2, r3 & U32)
        return r0_unchanged()

    def bpf_arena_reserve_pages(self, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        if r1 != self.arena_handle or self.arena is None:
            return (-errno.EINVAL) & U32
        if not r3 & U32:
            return 0
        # the kfunc returns a C int: on x86-64 only eax is set, zero-extended into rax
        return self.arena.reserve(r2, r3 & U32) & U32

    # --- binding --------------------------------------------------------------------------------------
    def binding(self, kind: str, key: Any) -> Callable[..., int]:
        if kind == "helper":
            return getattr(self, HELPERS[key])
        return getattr(self, key)


def r0_unchanged() -> int:
    """What a void kfunc leaves in r0 (the kernel leaves garbage; the VM gives 0)."""
    return 0


# --- bpf_trace_printk's format language (kernel/bpf/helpers.c bpf_bprintf_prepare) ------------------
_SPEC = re.compile(rb"%([0 +\-]*)([1-9][0-9]*)?(p(?:ks|us|[KxsSB])?|s|c|l{0,2}[diuxX]|%)")


def format_printk(fmt: bytes, args: list[int], memory: Memory) -> str:
    """Format like bpf_trace_printk: %d %i %u %x %X with l/ll, %c, %s, %p (and %px/%pK...)."""
    for b in fmt:
        if b > 0x7E or (b < 0x20 and b not in b"\t\n\v\f\r"):
            raise ValueError("non-printable character in format")
    out = []
    pos = 0
    argi = 0
    while True:
        j = fmt.find(b"%", pos)
        if j < 0:
            out.append(fmt[pos:].decode())
            break
        out.append(fmt[pos:j].decode())
        m = _SPEC.match(fmt, j)
        if m is None:
            raise ValueError("bad conversion")
        flags, width, conv = (g.decode() if g else "" for g in m.groups())
        pos = m.end()
        if conv == "%":
            out.append("%")
            continue
        if argi >= len(args):
            raise ValueError("too many conversions")
        v = args[argi]
        argi += 1
        spec = "%" + flags + width
        if conv.startswith("p"):
            if conv in ("pks", "pus"):
                out.append((spec + "s") % _cstr(memory, v))
            elif conv == "pK":
                out.append((spec + "s") % ("0" * 16))
            else:  # the kernel hashes plain %p; the VM prints the value itself
                out.append((spec + "s") % f"{v & M64:016x}")
            continue
        if conv == "s":
            out.append((spec + "s") % _cstr(memory, v))
            continue
        if conv == "c":
            out.append((spec + "c") % chr(v & 0xFF))
            continue
        wide = conv.startswith("l")
        base = conv[-1]
        bits = 64 if wide else 32
        val = v & ((1 << bits) - 1)
        if base in "di":
            val -= (val >> (bits - 1)) << bits
            out.append((spec + "d") % val)
        else:
            out.append((spec + {"u": "d", "x": "x", "X": "X"}[base]) % val)
    return "".join(out)


def _cstr(memory: Memory, addr: int) -> str:
    if addr == 0 or (addr < KSPACE and memory.arena is None):
        return "(null)"
    try:
        s, _ok = memory.read_cstr(addr, 512)
    except MemoryFault:
        return ""
    return s.decode("latin-1")
