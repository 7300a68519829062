"""The VM's memory model: every address a program can use, and what touching it means.

Addresses whose upper 32 bits are 0 are arena accesses, as the kernel's JIT makes them: it
reaches `kern_vm_start + (u32)reg + off`, so the VM works on the kernel-window offset
`k = (u32)reg + off` (which may fall just outside 0..4 GiB, into the guard). A missing page there
is a fault the kernel survives: a load gives 0, a store or atomic is skipped.

Everything else lives in regions placed at fake addresses above 4 GiB, one 4 GiB slot per region
(`hi32 = REGION_HI + n`): the stack, the context, map values and global-data maps. Any other
address is a `MemoryFault`. Nothing here lets a program reach Python's own memory.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import MemoryFault

if TYPE_CHECKING:  # pragma: no cover
    from .arena import VMArena

M64 = (1 << 64) - 1
U32 = 0xFFFFFFFF
KSPACE = 1 << 32
PAGE = 4096

REGION_HI = 0xFFFF8000  # region n lives at ((REGION_HI + n) << 32)
MAP_HANDLE_BASE = 0xFFFFA000 << 32  # map "pointers" (ld_imm64 of a map): no memory behind them
FUNC_HANDLE_BASE = 0xFFFFB000 << 32  # subprogram "pointers" (ld_imm64 src=4, callbacks)

MAX_FRAMES = 8  # the kernel's MAX_CALL_FRAMES
FRAME_SIZE = 512
STACK_SIZE = MAX_FRAMES * FRAME_SIZE

_UNPACK = {1: struct.Struct("<B").unpack_from, 2: struct.Struct("<H").unpack_from,
           4: struct.Struct("<I").unpack_from, 8: struct.Struct("<Q").unpack_from}
_PACK = {1: struct.Struct("<B").pack_into, 2: struct.Struct("<H").pack_into,
         4: struct.Struct("<I").pack_into, 8: struct.Struct("<Q").pack_into}
_MASK = {1: 0xFF, 2: 0xFFFF, 4: U32, 8: M64}


class Region:
    """A block of VM memory at a fake address; `buf` is a bytearray (or writable memoryview)."""

    __slots__ = ("name", "buf", "size", "readonly", "base", "hook")

    def __init__(self, name: str, buf: bytearray | memoryview, size: int, readonly: bool,
                 base: int) -> None:
        self.name = name
        self.buf = buf
        self.size = size
        self.readonly = readonly
        self.base = base
        self.hook: dict[tuple[int, int], int] | None = None  # (offset, size) -> value loaded


class Memory:
    """Region table + arena; the slow paths the translated code calls."""

    def __init__(self, arena: VMArena | None = None) -> None:
        self.regions: dict[int, Region] = {}
        self.arena = arena
        self._next = 0
        self.faults = 0  # arena faults survived (the kernel reports them on its stderr stream)
        self.fault_log: list[tuple[str, int]] = []
        if arena is not None:
            self._lo = arena.user_vm_start & U32
            self._hi = arena.user_vm_start & ~U32 & M64
            self._asz = arena.size

    # --- regions ----------------------------------------------------------------------------------
    def add_region(self, name: str, buf: bytearray | memoryview, size: int | None = None,
                   readonly: bool = False) -> Region:
        n = self._next
        self._next += 1
        base = (REGION_HI + n) << 32
        r = Region(name, buf, len(buf) if size is None else size, readonly, base)
        self.regions[REGION_HI + n] = r
        return r

    def remove_region(self, r: Region) -> None:
        self.regions.pop(r.base >> 32, None)

    def _user_form(self, a: int) -> bool:
        """An arena pointer in its user form: the kernel types such a register PTR_TO_ARENA
        (e.g. an `__arg_arena` argument) and reaches (u32)reg, so the VM does too."""
        return self.arena is not None and (a & ~U32 & M64) == self._hi

    def _region(self, a: int, n: int, what: str) -> tuple[Region, int]:
        a &= M64
        r = self.regions.get(a >> 32)
        if r is None:
            raise MemoryFault(f"{what} of {n} byte(s) outside every VM region", address=a, size=n,
                              region=self._describe(a))
        o = a & U32
        if o + n > r.size:
            raise MemoryFault(f"{what} of {n} byte(s) past the end of {r.name} ({r.size} bytes)",
                              address=a, size=n, region=r.name)
        return r, o

    def _describe(self, a: int) -> str:
        if a < KSPACE:
            return "the arena (no arena in this collection)" if self.arena is None else "arena"
        if self.arena is not None and (a & ~U32) == self._hi:
            return "the arena's user-space address range (cast it with cast_kern first)"
        if MAP_HANDLE_BASE <= a < MAP_HANDLE_BASE + KSPACE:
            return "a map handle (not memory)"
        if FUNC_HANDLE_BASE <= a < FUNC_HANDLE_BASE + KSPACE:
            return "a function handle (not memory)"
        return "unmapped"

    # --- loads and stores through regions (addresses >= 4 GiB) -------------------------------------
    def load(self, a: int, n: int) -> int:
        if self._user_form(a):
            return self.aload(a & U32, n)
        r, o = self._region(a, n, "load")
        if r.hook is not None:  # context fields the kernel rewrites (e.g. __sk_buff->data)
            v = r.hook.get((o, n))
            if v is not None:
                return v
        return _UNPACK[n](r.buf, o)[0]

    def store(self, a: int, n: int, v: int) -> None:
        if self._user_form(a):
            self.astore(a & U32, n, v)
            return
        r, o = self._region(a, n, "store")
        if r.readonly:
            raise MemoryFault("store into read-only memory", address=a & M64, size=n,
                              region=r.name)
        _PACK[n](r.buf, o, v & _MASK[n])

    # --- the arena (kernel-window offsets) ---------------------------------------------------------
    def _apieces(self, k: int, n: int) -> list[tuple[memoryview | bytearray, int, int]] | None:
        """The buffers holding [k, k+n) of the kernel window, or None if any page is missing."""
        if k < 0 or k + n > KSPACE:
            return None  # the guard area: nothing is ever mapped there
        ar = self.arena
        pieces = []
        end = k + n
        while k < end:
            take = min(end, (k | (PAGE - 1)) + 1) - k
            rel = k - self._lo
            if 0 <= rel < self._asz:
                if not ar.present[rel >> 12]:
                    return None
                pieces.append((ar.mem, rel, take))
            else:
                pg = ar.extra.get((rel & U32) >> 12)
                if pg is None:
                    return None
                pieces.append((pg, rel & (PAGE - 1), take))
            k += take
        return pieces

    def _fault(self, kind: str, k: int) -> None:
        self.faults += 1
        if len(self.fault_log) < 64:
            self.fault_log.append((kind, (self._hi | (k & U32)) if self.arena else k))

    def aload(self, k: int, n: int) -> int:
        """Arena load at kernel offset k; a fault gives 0."""
        if self.arena is None:
            return self.load(k, n)
        p = self._apieces(k, n)
        if p is None:
            self._fault("READ", k)
            return 0
        return int.from_bytes(b"".join(bytes(b[o:o + t]) for b, o, t in p), "little")

    def aload_keep(self, k: int, n: int, old: int) -> int:
        """Arena load-acquire at kernel offset k; a fault leaves the register (`old`) as it was."""
        if self.arena is None:
            return self.load(k, n)
        p = self._apieces(k, n)
        if p is None:
            self._fault("READ", k)
            return old
        return int.from_bytes(b"".join(bytes(b[o:o + t]) for b, o, t in p), "little")

    def astore(self, k: int, n: int, v: int) -> None:
        """Arena store at kernel offset k; a fault skips it."""
        if self.arena is None:
            self.store(k, n, v)
            return
        p = self._apieces(k, n)
        if p is None:
            self._fault("WRITE", k)
            return
        data = (v & _MASK[n]).to_bytes(n, "little")
        i = 0
        for b, o, t in p:
            b[o:o + t] = data[i:i + t]
            i += t

    def atomic(self, base: int, off: int, n: int, op: int, val: int, cmp: int) -> int | None:
        """An atomic read-modify-write; returns the old value, or None when an arena fault
        skipped it (the fetch register then keeps its value)."""
        mask = _MASK[n]
        if self._user_form(base):
            base &= U32
        if base < KSPACE and self.arena is not None:
            k = base + off
            p = self._apieces(k, n)
            if p is None:
                self._fault("WRITE", k)
                return None
            old = int.from_bytes(b"".join(bytes(b[o:o + t]) for b, o, t in p), "little")
            new = _rmw(op, old, val & mask, cmp & mask, mask)
            if new is not None:
                data = new.to_bytes(n, "little")
                i = 0
                for b, o, t in p:
                    b[o:o + t] = data[i:i + t]
                    i += t
                if op == 0xF1 and n == 4:
                    # x86's 32-bit lock cmpxchg leaves rax alone when it succeeds, and the
                    # kernel adds no zero-extension for arena cmpxchg: r0 keeps all 64 bits
                    # (observed on 6.18; a failing one loads eax, which zero-extends)
                    return None
            return old
        r, o = self._region(base + off, n, "atomic")
        if r.readonly:
            raise MemoryFault("atomic on read-only memory", address=(base + off) & M64, size=n,
                              region=r.name)
        old = _UNPACK[n](r.buf, o)[0]
        new = _rmw(op, old, val & mask, cmp & mask, mask)
        if new is not None:
            _PACK[n](r.buf, o, new)
        return old

    # --- byte access for helpers -------------------------------------------------------------------
    def read(self, a: int, n: int) -> bytes:
        """n bytes at address a (region, or a present arena page in 32-bit form)."""
        if n <= 0:
            return b""
        a &= M64
        if a < KSPACE and self.arena is not None:
            p = self._apieces(a, n)
            if p is None:
                raise MemoryFault(f"helper read of {n} byte(s) from a missing arena page",
                                  address=a, size=n, region="arena")
            return b"".join(bytes(b[o:o + t]) for b, o, t in p)
        r, o = self._region(a, n, "read")
        return bytes(r.buf[o:o + n])

    def write(self, a: int, data: bytes) -> None:
        n = len(data)
        if n == 0:
            return
        a &= M64
        if a < KSPACE and self.arena is not None:
            p = self._apieces(a, n)
            if p is None:
                raise MemoryFault(f"helper write of {n} byte(s) to a missing arena page",
                                  address=a, size=n, region="arena")
            i = 0
            for b, o, t in p:
                b[o:o + t] = data[i:i + t]
                i += t
            return
        r, o = self._region(a, n, "write")
        if r.readonly:
            raise MemoryFault("write into read-only memory", address=a, size=n, region=r.name)
        r.buf[o:o + n] = data

    def readable(self, a: int, n: int) -> bool:
        try:
            self.read(a, n)
        except MemoryFault:
            return False
        return True

    def read_cstr(self, a: int, limit: int) -> tuple[bytes, bool]:
        """Up to `limit` bytes of a NUL-terminated string at a; (bytes, ended_cleanly).

        Stops at the NUL, at `limit`, or at the first unreadable byte (ended_cleanly False)."""
        out = bytearray()
        while len(out) < limit:
            chunk = min(limit - len(out), PAGE - (a & (PAGE - 1)))
            try:
                b = self.read(a, chunk)
            except MemoryFault:
                b = b""
                for i in range(chunk):
                    try:
                        b += self.read(a + i, 1)
                    except MemoryFault:
                        z = b.find(0)
                        if z >= 0:
                            return bytes(out + b[:z]), True
                        return bytes(out + b), False
            z = b.find(0)
            if z >= 0:
                return bytes(out + b[:z]), True
            out += b
            a += len(b)
        return bytes(out), True


def _rmw(op: int, old: int, val: int, cmp: int, mask: int) -> int | None:
    """The new value of an atomic, or None when nothing is written (a failed cmpxchg)."""
    base = op & ~1
    if base == 0x00:
        return (old + val) & mask
    if base == 0x40:
        return old | val
    if base == 0x50:
        return old & val
    if base == 0xA0:
        return old ^ val
    if op == 0xE1:
        return val
    if op == 0xF1:
        return val if old == cmp else None
    raise AssertionError(f"atomic op {op:#x}")  # check.py rejects every other op
