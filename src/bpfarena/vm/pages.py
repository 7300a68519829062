"""The arena's free-page tracker, with the kernel's ordering (kernel/bpf/range_tree.c).

The kernel keeps free page runs in two trees: one by position, one by size. Allocation without a
hint takes the *smallest* run that fits, from its start; among runs of equal size it takes the one
(re)inserted most recently. Every change re-inserts the runs it touches, so the exact sequence of
removals and insertions below follows the kernel's, because it decides later placements.

Page offsets are plain ints (the kernel uses u32; arena page offsets stay below 2^32).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort


class RangeTree:
    """Set of free page runs `[start, last]`, ordered like the kernel's range tree."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # sorted run starts
        self._last: dict[int, int] = {}  # start -> last page (inclusive)
        self._sizes: list[int] = []  # sorted distinct run sizes
        self._by_size: dict[int, dict[int, None]] = {}  # size -> starts, oldest insertion first

    # --- the two trees ---------------------------------------------------------------------------
    def _insert(self, start: int, last: int) -> None:
        self._last[start] = last
        insort(self._starts, start)
        size = last - start + 1
        d = self._by_size.get(size)
        if d is None:
            d = self._by_size[size] = {}
            insort(self._sizes, size)
        d[start] = None

    def _remove(self, start: int) -> int:
        last = self._last.pop(start)
        i = bisect_left(self._starts, start)
        del self._starts[i]
        size = last - start + 1
        d = self._by_size[size]
        del d[start]
        if not d:
            del self._by_size[size]
            del self._sizes[bisect_left(self._sizes, size)]
        return last

    def _first_overlap(self, start: int, last: int) -> int | None:
        """Start of the lowest run that overlaps [start, last], or None."""
        starts = self._starts
        i = bisect_right(starts, start) - 1
        if i >= 0 and self._last[starts[i]] >= start:
            return starts[i]
        i += 1
        if i < len(starts) and starts[i] <= last:
            return starts[i]
        return None

    # --- the kernel's operations -------------------------------------------------------------------
    def is_set(self, start: int, count: int) -> bool:
        """True when one free run holds all of [start, start+count)."""
        last = start + count - 1
        s = self._first_overlap(start, last)
        return s is not None and s <= start and self._last[s] >= last

    def find(self, count: int) -> int:
        """Start of the best-fit run for `count` pages, or -1."""
        i = bisect_left(self._sizes, count)
        if i == len(self._sizes):
            return -1
        return next(reversed(self._by_size[self._sizes[i]]))

    def clear(self, start: int, count: int) -> None:
        """Mark [start, start+count) used."""
        last = start + count - 1
        while True:
            s = self._first_overlap(start, last)
            if s is None:
                return
            rl = self._last[s]
            if s < start and rl > last:  # a hole in the middle of a run
                self._remove(s)
                self._insert(s, start - 1)
                self._insert(last + 1, rl)
            elif s < start:  # overlaps the end of a run
                self._remove(s)
                self._insert(s, start - 1)
            elif rl > last:  # overlaps the start of a run
                self._remove(s)
                self._insert(last + 1, rl)
            else:  # the run lies inside the cleared range
                self._remove(s)

    def set(self, start: int, count: int) -> None:
        """Mark [start, start+count) free, merging with neighbours."""
        if self.is_set(start, count):
            return
        self.clear(start, count)
        last = start + count - 1
        left = self._first_overlap(start - 1, start - 1) if start > 0 else None
        right = self._first_overlap(last + 1, last + 1)
        if left is not None and right is not None:
            right_last = self._last[right]
            self._remove(left)
            self._insert(left, right_last)
            self._remove(right)
        elif left is not None:
            self._remove(left)
            self._insert(left, last)
        elif right is not None:
            right_last = self._remove(right)
            self._insert(start, right_last)
        else:
            self._insert(start, last)

    def is_free(self, page: int) -> bool:
        return self.is_set(page, 1)

    def runs(self) -> list[tuple[int, int]]:
        """Free runs as (start, count), by address."""
        return [(s, self._last[s] - s + 1) for s in self._starts]

    def free_count(self) -> int:
        return sum(self._last[s] - s + 1 for s in self._starts)
