"""The VM's arena: a sparse shared memfd mapping with the kernel's page bookkeeping.

Memory is a memfd, ftruncate'd to the arena size and mapped MAP_SHARED once, so Python views,
NumPy, the interpreter and a second process (through `fd`) all see the same bytes, and only
touched pages cost memory. Which pages exist is tracked here, exactly as kernel/bpf/arena.c does
(ARENA_FACTS.md sections 3 and 4): a range tree of free pages decides placement, `present` says
which pages hold memory. A user-space touch allocates a zeroed page, like the kernel's user fault:
read()/write() do it explicitly; touches through the raw memoryview or NumPy are discovered with
mincore(2) and folded in (in address order) before every page decision.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from ..arena import layout
from ..arena.base import Arena
from ..errors import ArenaError
from .pages import RangeTree

PAGE_SIZE = layout.PAGE_SIZE
U32 = layout.U32
U64 = (1 << 64) - 1
KSPACE = 1 << 32  # the kernel's 4 GiB arena window (plus guards on either side)
TASK_SIZE = (1 << 47) - PAGE_SIZE  # x86-64 user address space (4-level page tables)
MMAP_MIN_ADDR = 1 << 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.mincore.restype = ctypes.c_int


def _pick_start(host_addr: int, size: int) -> int:
    """The kernel's choice without map_extra: the hole's start, or the next 4 GiB line if the range
    would cross one (arena_get_unmapped_area)."""
    if (host_addr >> 32) == ((host_addr + size - 1) >> 32):
        return host_addr
    return (host_addr + KSPACE - 1) & ~(KSPACE - 1)


class VMArena(Arena):
    """An arena emulated in user space; `bpfarena.Arena(pages, backend="vm")`."""

    backend = "vm"

    def __init__(self, pages: int, backend: str = "vm", user_vm_start: int | None = None,
                 flags: int = 0, name: str | None = None) -> None:
        flags |= layout.BPF_F_MMAPABLE
        map_extra = user_vm_start or 0
        layout.check_create(pages, map_extra, flags)
        if map_extra and map_extra + pages * PAGE_SIZE > TASK_SIZE:
            # the kernel creates the map, but libbpf's mmap at map_extra fails
            raise ArenaError(f"user_vm_start 0x{map_extra:x} + {pages} pages is beyond the user "
                             f"address space (0x{TASK_SIZE:x})", errno.EBUSY, map_extra)
        if map_extra and map_extra < MMAP_MIN_ADDR:
            raise ArenaError(f"user_vm_start 0x{map_extra:x} is below mmap_min_addr",
                             errno.EPERM, map_extra)
        self._max_pages = pages
        self._flags = flags
        self._name = name
        self._closed = False
        size = pages * PAGE_SIZE
        self._fd = os.memfd_create(f"bpfarena:{name or 'arena'}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, size)
            self._mm = mmap.mmap(self._fd, size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            os.close(self._fd)
            raise ArenaError(f"cannot map {size:#x} bytes of arena memory: {e}", e.errno) from None
        probe = ctypes.c_char.from_buffer(self._mm)
        self._host_addr = ctypes.addressof(probe)
        del probe
        self._user_vm_start = map_extra or _pick_start(self._host_addr, size)
        self._lo = self._user_vm_start & U32
        # views the interpreter uses (created once; released at close)
        self.mem = memoryview(self._mm)
        self.present = bytearray(pages)  # 1 where a page holds memory
        self.extra: dict[int, bytearray] = {}  # pages mapped outside [start, end) (see _free)
        self.tree = RangeTree()
        self.tree.set(0, pages)
        self._exported = False
        self.globals_offset = 0  # where the loader put the arena globals image
        self._vec = None
        self._views: list[memoryview] = [self.mem]

    # --- shared memory -------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The memfd holding the arena's bytes (for a second process; mmap it MAP_SHARED)."""
        self._check_open()
        self._exported = True
        return self._fd

    @property
    def segv_on_fault(self) -> bool:
        return bool(self._flags & layout.BPF_F_SEGV_ON_FAULT)

    def cast_view(self, fmt: str) -> memoryview:
        """An internal memoryview cast (released when the arena closes)."""
        v = self.mem.cast(fmt)
        self._views.append(v)
        return v

    def sync(self) -> None:
        """Fold pages that user space touched through raw views into the bookkeeping.

        Those touches made the kernel allocate a page (a user fault); here mincore(2) finds the
        pages that became resident. With BPF_F_SEGV_ON_FAULT such touches are not folded (the
        kernel would have raised SIGSEGV instead): use read()/write() with that flag.
        """
        if not self._exported or self._closed or self.segv_on_fault:
            return
        n = self._max_pages
        if self._vec is None:
            self._vec = (ctypes.c_ubyte * n)()
        if _libc.mincore(self._host_addr, n * PAGE_SIZE, self._vec) != 0:
            return
        import numpy as np

        res = np.frombuffer(self._vec, dtype=np.uint8) & 1
        have = np.frombuffer(self.present, dtype=np.uint8)
        new = np.flatnonzero(res > have)
        for pg in new.tolist():
            self._user_fault(pg)

    def _user_fault(self, pg: int) -> None:
        self.tree.clear(pg, 1)
        self.present[pg] = 1

    def _touch(self, off: int, n: int) -> None:
        """User-space access to [off, off+n): fault in missing pages (kernel arena_vm_fault)."""
        if n <= 0:
            return
        first, last = off >> 12, (off + n - 1) >> 12
        present = self.present
        if present.find(0, first, last + 1) < 0:
            return
        if self.segv_on_fault:
            for pg in range(first, last + 1):
                if not present[pg]:
                    addr = self._user_vm_start + pg * PAGE_SIZE
                    raise ArenaError(
                        f"user access to unallocated page 0x{addr:x} of a BPF_F_SEGV_ON_FAULT "
                        "arena", errno.EFAULT, addr)
        self.sync()
        for pg in range(first, last + 1):
            if not present[pg]:
                self._user_fault(pg)

    # --- Arena primitives ------------------------------------------------------------------------
    def _read(self, off: int, n: int) -> bytes:
        self._touch(off, n)
        return bytes(self.mem[off:off + n])

    def _write(self, off: int, data: bytes) -> None:
        self._touch(off, len(data))
        self.mem[off:off + len(data)] = data

    def _buffer(self) -> memoryview:
        self._exported = True
        return memoryview(self._mm)

    def _resident_pages(self) -> int:
        self.sync()
        return self.present.count(1) + len(self.extra)

    def _alloc_pages(self, count: int, addr: int | None, node: int) -> int:
        self.sync()
        return self.alloc(count, addr or 0, node, 0)

    def _free_pages(self, addr: int, count: int) -> None:
        self.sync()
        if count and addr:
            self.free(addr, count)

    def _reserve_pages(self, addr: int, count: int) -> int:
        self.sync()
        if not count:
            return 0
        return self.reserve(addr, count)

    def _close(self) -> None:
        for v in reversed(self._views):
            try:
                v.release()
            except Exception:
                pass
        self._views.clear()
        try:
            self._mm.close()
        except BufferError:
            pass  # the user still holds a view: the mapping goes when the last view does
        os.close(self._fd)

    # --- the kernel's page operations (also called by the kfuncs) -------------------------------
    def pgoff(self, addr: int) -> int:
        return ((addr - self._lo) & U32) >> 12

    def alloc(self, count: int, addr: int, node: int, flags: int) -> int:
        """bpf_arena_alloc_pages: the full user address, or 0 on any failure."""
        if flags or count <= 0 or count > self._max_pages or count >= 1 << 32:
            return 0
        if node not in (-1, 0):
            return 0
        tree = self.tree
        if addr:
            if addr & (PAGE_SIZE - 1):
                return 0
            pg = self.pgoff(addr)
            if pg > self._max_pages - count:
                return 0
            if not tree.is_set(pg, count):
                return 0
        else:
            pg = tree.find(count)
            if pg < 0:
                return 0
        ko = (self._lo + pg * PAGE_SIZE) & U32  # kernel-window offset of the first page
        if ko + count * PAGE_SIZE > KSPACE + layout.GUARD_SZ // 2:
            return 0  # would map past the kernel's vm area: the kernel fails and backs out
        tree.clear(pg, count)
        self._map_pages(ko, count)
        return (self._user_vm_start & ~U32 & U64) + ko

    def _map_pages(self, ko: int, count: int) -> None:
        """Give `count` pages from kernel-window offset `ko` fresh zeroed memory."""
        rel = ko - self._lo
        if 0 <= rel and rel + count * PAGE_SIZE <= self.size:  # the usual case: inside the arena
            pg = rel >> 12
            if self._exported:  # a raw touch may have left bytes in a page we never gave out
                self._zap(pg, count)
            self.present[pg:pg + count] = b"\x01" * count
            return
        for i in range(count):
            k = ko + i * PAGE_SIZE
            rel = k - self._lo
            if 0 <= rel < self.size:
                self._zap(rel >> 12, 1)
                self.present[rel >> 12] = 1
            else:
                self.extra[(rel & U32) >> 12] = bytearray(PAGE_SIZE)

    def _zap(self, pg: int, n: int) -> None:
        self._mm.madvise(mmap.MADV_REMOVE, pg * PAGE_SIZE, n * PAGE_SIZE)

    def free(self, addr: int, count: int) -> None:
        """bpf_arena_free_pages (the caller has rejected count 0 and NULL)."""
        uaddr = addr & U32 & ~(PAGE_SIZE - 1)
        full = (self._user_vm_start & ~U32 & U64) + uaddr
        end = min(self.user_vm_end, full + count * PAGE_SIZE)
        if full >= end:
            return
        n = (end - full) >> 12
        self.tree.set(self.pgoff(uaddr), n)
        lo, size = self._lo, self.size
        rel = uaddr - lo
        if 0 <= rel and rel + n * PAGE_SIZE <= size:  # the usual case: inside the arena
            pg = rel >> 12
            self.present[pg:pg + n] = bytes(n)
            self._zap(pg, n)
            return
        present = self.present
        for i in range(n):
            ko = uaddr + i * PAGE_SIZE
            rel = ko - lo
            if 0 <= rel < size:
                pg = rel >> 12
                if present[pg]:
                    present[pg] = 0
                    self._zap(pg, 1)
            elif ko < KSPACE:
                self.extra.pop((rel & U32) >> 12, None)

    def reserve(self, addr: int, count: int) -> int:
        """bpf_arena_reserve_pages (count > 0): 0, -EINVAL or -EBUSY."""
        if addr & (PAGE_SIZE - 1):
            return 0
        pg = self.pgoff(addr)
        if pg + count > self._max_pages:
            return -errno.EINVAL
        if not self.tree.is_set(pg, count):
            return -errno.EBUSY
        self.tree.clear(pg, count)
        return 0

    def page_of(self, kaddr: int) -> int:
        """Page index for a kernel-window offset, or -1 when no arena page is there."""
        rel = kaddr - self._lo
        if 0 <= rel < self.size:
            return rel >> 12
        return -1
