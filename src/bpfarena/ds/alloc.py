"""A Python-side page-fragment allocator, layout-compatible with include/arena_alloc.h.

Python takes its own pages with `arena.alloc_pages` (so it never races BPF's per-CPU current
page) but lays them out exactly as the C allocator does: objects carved downward from offset
PAGE_SIZE - 8, and the last 8 bytes of each page count the live objects (+1 while the page is the
allocator's current page). So BPF may `bpf_free()` an object Python allocated, and the page is
released when its last object goes, whichever side frees it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from ..arena.layout import PAGE_SIZE
from ..errors import ArenaError
from ._mem import alloc_pages_nonnull

__all__ = ["ArenaAllocator", "Batch", "COUNTER_OFFSET", "MAX_OBJECT"]

COUNTER_OFFSET = PAGE_SIZE - 8  # where the live-object counter sits in every page
MAX_OBJECT = PAGE_SIZE - 8  # requests of this size or more fail, as in C
_CHUNK_PAGES = 256  # pages per alloc_pages call in bulk allocation


def _round8(size: int) -> int:
    return (size + 7) & ~7


@dataclass
class Batch:
    """Objects allocated together by `ArenaAllocator.alloc_many`.

    `addrs[i]` is the user address of object i. `write(data)` stores every object's bytes
    (`data` has shape (count, size) or is a structured array of that item size) with one
    `arena.write` per run of contiguous pages, counters included.
    """

    arena: object
    size: int
    per_page: int
    addrs: np.ndarray  # uint64 user addresses, in allocation order
    runs: list[tuple[int, int, int]]  # (first page user address, pages, first object index)

    def write(self, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(len(self.addrs), -1)
        if raw.shape[1] != self.size:
            raise ArenaError(f"batch objects are {self.size} bytes, data rows are {raw.shape[1]}",
                             errno.EINVAL)
        for base, pages, first in self.runs:
            n = min(pages * self.per_page, len(self.addrs) - first)
            self.arena.write(base, _run_image(pages, self.size, self.per_page, n,
                                              raw[first:first + n]))


def _run_image(pages: int, size: int, per_page: int, n: int, rows: np.ndarray | None) -> bytes:
    """The bytes of `pages` fresh pages holding n objects (rows, or zeros) and their counters."""
    img = np.zeros(pages * PAGE_SIZE, dtype=np.uint8)
    counts = np.full(pages, per_page, dtype=np.uint64)
    if n < pages * per_page:
        counts[-1] = n - (pages - 1) * per_page
    img.view(np.uint64).reshape(pages, PAGE_SIZE // 8)[:, COUNTER_OFFSET // 8] = counts
    if rows is not None and n:
        idx = np.arange(n, dtype=np.int64)
        # object i: page i // per_page, slot i % per_page counted downward from the counter
        starts = (idx // per_page) * PAGE_SIZE + COUNTER_OFFSET - (idx % per_page + 1) * size
        img[starts[:, None] + np.arange(size, dtype=np.int64)] = rows
    return img.tobytes()


class ArenaAllocator:
    """Allocate small objects in an arena from Python, with arena_alloc.h's page layout."""

    def __init__(self, arena, chunk_pages: int = _CHUNK_PAGES) -> None:
        self.arena = arena
        self.chunk_pages = max(1, chunk_pages)
        self._page = 0  # current page (user address), 0 = none
        self._off = 0

    # --- single objects -------------------------------------------------------------------
    def alloc(self, size: int) -> int:
        """One object of `size` bytes (rounded up to 8); returns its user address.

        Raises ArenaError (EINVAL) for sizes of PAGE_SIZE - 8 or more, (ENOMEM) when the
        arena has no page left.
        """
        size = self._check_size(size)
        if not self._page or self._off < size:
            fresh = alloc_pages_nonnull(self.arena, 1)
            self.arena.write_u64(fresh + COUNTER_OFFSET, 1)  # the "current page" reference
            if self._page:
                self._put(self._page)
            self._page, self._off = fresh, COUNTER_OFFSET
        self._off -= size
        cnt = self._page + COUNTER_OFFSET
        self.arena.write_u64(cnt, self.arena.read_u64(cnt) + 1)
        return self._page + self._off

    def free(self, addr: int) -> None:
        """Release an object (from either side); its page goes when the counter reaches 0."""
        if not addr:
            return
        self._put(self.arena.to_user(self.arena.to_kern(addr)))

    def _put(self, addr: int) -> None:
        page = addr & ~(PAGE_SIZE - 1)
        cnt = self.arena.read_u64(page + COUNTER_OFFSET)
        if cnt == 0:
            raise ArenaError(f"free of 0x{addr:x}: its page has no live objects", errno.EINVAL,
                             addr)
        if cnt == 1:
            if page == self._page:
                self._page = 0
            self.arena.free_pages(page, 1)
        else:
            self.arena.write_u64(page + COUNTER_OFFSET, cnt - 1)

    def release(self) -> None:
        """Drop the current page's reference (it is freed if nothing in it is live)."""
        if self._page:
            page, self._page = self._page, 0
            self._put(page)

    # --- many objects at once ---------------------------------------------------------------
    def alloc_many(self, count: int, size: int) -> Batch:
        """`count` objects of `size` bytes on fresh pages, taken in contiguous runs.

        The pages are written at once with their counters (objects zeroed); fill them with
        `Batch.write`. Pages hold (PAGE_SIZE - 8) // size objects each, as bpf_alloc would.
        """
        size = self._check_size(size)
        if count < 0:
            raise ArenaError(f"negative object count {count}", errno.EINVAL)
        per_page = COUNTER_OFFSET // size
        need = -(-count // per_page) if count else 0
        runs: list[tuple[int, int, int]] = []
        addrs = np.zeros(count, dtype=np.uint64)
        first = 0
        chunk = self.chunk_pages
        try:
            while need:
                take = min(need, chunk)
                try:
                    base = alloc_pages_nonnull(self.arena, take)
                except ArenaError:
                    if take == 1:
                        raise
                    chunk = max(1, take // 2)  # fragmented: smaller runs
                    continue
                n = min(take * per_page, count - first)
                page_of = np.arange(n, dtype=np.uint64) // per_page
                slot = np.arange(n, dtype=np.uint64) % per_page
                addrs[first:first + n] = (np.uint64(base) + page_of * np.uint64(PAGE_SIZE)
                                          + np.uint64(COUNTER_OFFSET)
                                          - (slot + np.uint64(1)) * np.uint64(size))
                self.arena.write(base, _run_image(take, size, per_page, n, None))
                runs.append((base, take, first))
                first += n
                need -= take
        except ArenaError:
            for base, pages, _ in runs:
                self.arena.free_pages(base, pages)
            raise
        return Batch(self.arena, size, per_page, addrs, runs)

    @staticmethod
    def _check_size(size: int) -> int:
        if not isinstance(size, int) or size <= 0:
            raise ArenaError(f"object size must be a positive int, got {size!r}", errno.EINVAL)
        size = _round8(size)
        if size >= MAX_OBJECT:
            raise ArenaError(f"objects of {size} bytes do not fit the page allocator "
                             f"(limit {MAX_OBJECT - 1})", errno.EINVAL)
        return size
