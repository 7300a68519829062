"""Checked, fast reads of arena memory for the walkers (pointer in either form -> bytes)."""

from __future__ import annotations

import errno
import struct

import numpy as np

from ..arena.layout import BPF_F_SEGV_ON_FAULT, U32
from ..errors import ArenaError

_U64 = struct.Struct("<Q")


def alloc_pages_nonnull(arena, count: int) -> int:
    """`arena.alloc_pages(count)`, never at an address whose low 32 bits are 0.

    Where user_vm_start sits on a 4 GiB multiple, the object at the arena's first byte casts to
    NULL on the BPF side (ARENA_FACTS.md section 2). If the allocation lands there, that one page
    is kept allocated, unused, as a guard, and the run is taken again.
    """
    p = arena.alloc_pages(count)
    if p & U32:
        return p
    arena.free_pages(p, count)
    arena.alloc_pages(1, addr=p)  # the guard page: left allocated for the arena's lifetime
    return arena.alloc_pages(count)


class ArenaMemory:
    """Reads at arena pointers (user form or 32-bit form), bounds-checked.

    Uses one zero-copy view of the arena where a stray touch is harmless (a zeroed page appears,
    as a user fault makes it); with BPF_F_SEGV_ON_FAULT a touch of a missing page would be a
    SIGSEGV, so every read then goes through `arena.read`, which checks first.
    """

    def __init__(self, arena) -> None:
        self.arena = arena
        self.base = arena.user_vm_start
        self.size = arena.size
        self._direct = not (arena.flags & BPF_F_SEGV_ON_FAULT)
        self._mv = arena.memoryview() if self._direct else None
        self._np: np.ndarray | None = None

    def offset(self, ptr: int, n: int, what: str = "pointer") -> int:
        """Offset of `ptr` in the arena, or ArenaError (EFAULT) if [ptr, ptr+n) is outside."""
        off = (ptr - self.base) & U32
        if off + n > self.size:
            raise ArenaError(f"{what} 0x{ptr:x} points outside the arena "
                             f"(offset 0x{off:x} + {n} > size 0x{self.size:x})", errno.EFAULT, ptr)
        return off

    def read(self, ptr: int, n: int, what: str = "pointer") -> bytes:
        off = self.offset(ptr, n, what)
        if self._mv is not None:
            return bytes(self._mv[off:off + n])
        return self.arena.read(self.base + off, n)

    def u64(self, ptr: int, what: str = "pointer") -> int:
        off = self.offset(ptr, 8, what)
        if self._mv is not None:
            return _U64.unpack_from(self._mv, off)[0]
        return _U64.unpack(self.arena.read(self.base + off, 8))[0]

    def unpack(self, st: struct.Struct, ptr: int, what: str = "pointer") -> tuple:
        off = self.offset(ptr, st.size, what)
        if self._mv is not None:
            return st.unpack_from(self._mv, off)
        return st.unpack(self.arena.read(self.base + off, st.size))

    @property
    def direct(self) -> bool:
        return self._direct

    def array(self) -> np.ndarray:
        """The whole arena as a uint8 array (direct mode only)."""
        if self._np is None:
            self._np = np.frombuffer(self._mv, dtype=np.uint8)
        return self._np

    def gather(self, ptrs: np.ndarray, n: int, dtype: np.dtype, what: str) -> np.ndarray:
        """Read `n` bytes at each pointer in `ptrs` (uint64), as an array of `dtype` records."""
        offs = (ptrs.astype(np.uint64) - np.uint64(self.base)) & np.uint64(U32)
        bad = offs + np.uint64(n) > np.uint64(self.size)
        if bad.any():
            p = int(ptrs[np.argmax(bad)])
            raise ArenaError(f"{what} 0x{p:x} points outside the arena", errno.EFAULT, p)
        if not self._direct:
            raw = b"".join(self.arena.read(self.base + int(o), n) for o in offs)
            return np.frombuffer(raw, dtype=dtype)
        mem = self.array()
        rows = mem[offs.astype(np.int64)[:, None] + np.arange(n, dtype=np.int64)]
        return np.ascontiguousarray(rows).view(dtype).reshape(-1)
