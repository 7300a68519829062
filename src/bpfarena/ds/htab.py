"""`ArenaHashTable`: include/arena_htab.h's hash table of lists, built and walked from Python.

    struct arena_htab      { u64 buckets; s32 n_buckets; u32 pad; }                 16 bytes
    struct arena_htab_elem { s32 hash; s32 key; s32 value; u32 pad; u64 next; u64 pprev; } 32

hash(key) = key, bucket = hash & (n_buckets - 1); bucket heads and `next` point at the node of
an element (element + 16). Python writes user-form pointers, as clang-compiled code stores them,
and accepts user or 32-bit forms when it walks.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from ..arena.layout import PAGE_SIZE, U32
from ..errors import ArenaError
from ._mem import ArenaMemory, alloc_pages_nonnull
from .alloc import ArenaAllocator

__all__ = ["DEFAULT_BUCKETS", "ELEM_DTYPE", "ELEM_SIZE", "HTAB_SIZE", "NODE_OFFSET",
           "ArenaHashTable"]

HTAB_SIZE = 16
ELEM_SIZE = 32
NODE_OFFSET = 16
DEFAULT_BUCKETS = 2 * PAGE_SIZE // 8  # what arena_htab_init(h, 0) makes: 1024
MAX_BUCKETS = 1 << 24
ELEM_DTYPE = np.dtype([("hash", "<i4"), ("key", "<i4"), ("value", "<i4"), ("pad", "<u4"),
                       ("next", "<u8"), ("pprev", "<u8")])
_HTAB = struct.Struct("<QiI")
_ELEM = struct.Struct("<iiiIQQ")
_I32 = (-(1 << 31), (1 << 31) - 1)


def _pow2(n: int) -> int:
    if n <= 0:
        n = DEFAULT_BUCKETS
    if n > MAX_BUCKETS:
        raise ArenaError(f"at most {MAX_BUCKETS} buckets, asked for {n}", errno.EINVAL)
    return 1 << (n - 1).bit_length()


class ArenaHashTable:
    """The table whose `struct arena_htab` is at `addr` (user or 32-bit address)."""

    def __init__(self, arena, addr: int) -> None:
        if not addr:
            raise ArenaError("hash table pointer is NULL", errno.EINVAL)
        self.arena = arena
        self.mem = ArenaMemory(arena)
        self.addr = arena.to_user(arena.to_kern(addr)) or addr
        buckets, n, _pad = self.mem.unpack(_HTAB, self.addr, "hash table")
        if n <= 0 or n & (n - 1):
            raise ArenaError(f"hash table at 0x{self.addr:x}: n_buckets {n} is not a positive "
                             "power of two (not a table, or not built yet?)", errno.EINVAL,
                             self.addr)
        self.n_buckets = n
        self.buckets = arena.to_user(buckets & U32)
        self.mem.offset(self.buckets, 8 * n, "bucket array")

    def __repr__(self) -> str:
        return (f"<ArenaHashTable at 0x{self.addr:x}: {self.n_buckets} buckets at "
                f"0x{self.buckets:x}>")

    # --- walking --------------------------------------------------------------------------------
    def heads(self) -> np.ndarray:
        """The bucket heads (stored node pointers, 0 for empty buckets) as uint64."""
        raw = self.mem.read(self.buckets, 8 * self.n_buckets, "bucket array")
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def elements(self) -> np.ndarray:
        """Every element as an ELEM_DTYPE record plus its user address (field `addr`).

        Walks all chains at once: step k gathers the k-th element of every bucket, so the cost
        is a few NumPy operations per chain position, not per element.
        """
        cur = self.heads()
        cur = cur[cur != 0]
        limit = self.arena.size // ELEM_SIZE
        parts: list[np.ndarray] = []
        addrs: list[np.ndarray] = []
        total = 0
        while len(cur):
            elem = self._user(cur) - np.uint64(NODE_OFFSET)
            recs = self.mem.gather(elem, ELEM_SIZE, ELEM_DTYPE, "hash table element")
            parts.append(recs)
            addrs.append(elem)
            total += len(recs)
            if total > limit:
                raise ArenaError(f"hash table at 0x{self.addr:x} has more elements than the "
                                 "arena can hold (a cycle?)", errno.ELOOP, self.addr)
            nxt = recs["next"].astype(np.uint64)
            cur = nxt[nxt != 0]
        if not parts:
            out = np.zeros(0, dtype=ELEM_DTYPE.descr + [("addr", "<u8")])
            return out
        recs = np.concatenate(parts)
        out = np.zeros(len(recs), dtype=ELEM_DTYPE.descr + [("addr", "<u8")])
        for name in ELEM_DTYPE.names:
            out[name] = recs[name]
        out["addr"] = np.concatenate(addrs)
        return out

    def _user(self, ptrs: np.ndarray) -> np.ndarray:
        """Stored pointers (user or 32-bit form) -> user form."""
        hi = np.uint64(self.arena.user_vm_start & ~U32 & ((1 << 64) - 1))
        return (ptrs & np.uint64(U32)) | hi

    def items(self) -> list[tuple[int, int]]:
        """(key, value) of every element, bucket by bucket."""
        e = self.elements()
        return list(zip(e["key"].tolist(), e["value"].tolist(), strict=True))

    def to_dict(self) -> dict[int, int]:
        return dict(self.items())

    def __len__(self) -> int:
        return len(self.elements())

    def __iter__(self) -> Iterator[int]:
        return iter(k for k, _ in self.items())

    def find(self, key: int) -> int | None:
        """The user address of the element holding `key`, or None (walks one bucket)."""
        p = self.mem.u64(self.buckets + 8 * (key & (self.n_buckets - 1)), "bucket")
        steps = 0
        while p:
            steps += 1
            if steps > self.arena.size // ELEM_SIZE:
                raise ArenaError(f"bucket of key {key} loops", errno.ELOOP, self.addr)
            elem = self.arena.to_user(p & U32) - NODE_OFFSET
            h, k, _v, _pad, nxt, _pprev = self.mem.unpack(_ELEM, elem, "hash table element")
            if h == key and k == key:
                return elem
            p = nxt
        return None

    def lookup(self, key: int, default: int | None = None) -> int | None:
        """The value stored for `key`, or `default`."""
        elem = self.find(key)
        if elem is None:
            return default
        return self.mem.unpack(_ELEM, elem)[2]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.find(key) is not None

    def chain_lengths(self) -> np.ndarray:
        """Elements per bucket (for sizing: BPF lookups walk the whole chain, so short is fast)."""
        e = self.elements()
        return np.bincount(e["hash"].astype(np.int64) & (self.n_buckets - 1),
                           minlength=self.n_buckets)

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, arena, items: Mapping[int, int] | Iterable[tuple[int, int]],
              n_buckets: int = DEFAULT_BUCKETS, *,
              allocator: ArenaAllocator | None = None) -> int:
        """Build a table holding `items` (key -> value, 32-bit signed) with Python's own writes.

        n_buckets rounds up to a power of two (0 means 1024), like arena_htab_init. Each bucket
        lists its elements newest first, as if arena_htab_update had inserted them in order.
        Returns the user address of the `struct arena_htab`; store it where BPF can find it.
        BPF code walks whole chains (may_goto loops, no fixed cap), but short chains are faster:
        keep n_buckets near the element count (see `chain_lengths()`).
        """
        alloc = allocator or ArenaAllocator(arena)
        d = dict(items.items() if isinstance(items, Mapping) else items)
        n = _pow2(n_buckets)
        try:
            keys = np.fromiter(d.keys(), dtype=np.int64, count=len(d))
            vals = np.fromiter(d.values(), dtype=np.int64, count=len(d))
        except (TypeError, OverflowError, ValueError) as e:
            raise ArenaError(f"hash table keys and values must be ints: {e}", errno.EINVAL) from e
        for name, arr in (("key", keys), ("value", vals)):
            if len(arr) and (arr.min() < _I32[0] or arr.max() > _I32[1]):
                raise ArenaError(f"a {name} does not fit in a signed 32-bit int", errno.EINVAL)

        pages = -(-8 * n // PAGE_SIZE)
        buckets = alloc_pages_nonnull(arena, pages)
        htab = alloc.alloc(HTAB_SIZE)
        heads = np.zeros(pages * PAGE_SIZE // 8, dtype=np.uint64)

        count = len(keys)
        if count:
            batch = alloc.alloc_many(count, ELEM_SIZE)
            nodes = batch.addrs + np.uint64(NODE_OFFSET)
            b = (keys & (n - 1)).astype(np.int64)
            idx = np.arange(count, dtype=np.int64)
            order = np.lexsort((-idx, b))  # by bucket, newest first inside a bucket
            sb = b[order]
            snodes = nodes[order]
            same_next = np.zeros(count, dtype=bool)
            same_next[:-1] = sb[1:] == sb[:-1]
            nxt = np.zeros(count, dtype=np.uint64)
            nxt[:-1] = np.where(same_next[:-1], snodes[1:], np.uint64(0))
            first = np.ones(count, dtype=bool)
            first[1:] = ~same_next[:-1]
            pprev = np.empty(count, dtype=np.uint64)
            pprev[1:] = snodes[:-1]
            pprev[first] = np.uint64(buckets) + sb[first].astype(np.uint64) * np.uint64(8)
            heads[sb[first]] = snodes[first]

            recs = np.zeros(count, dtype=ELEM_DTYPE)
            recs["hash"] = keys
            recs["key"] = keys
            recs["value"] = vals
            recs["next"][order] = nxt
            recs["pprev"][order] = pprev
            batch.write(recs)
        arena.write(buckets, heads.astype("<u8").tobytes())
        arena.write(htab, _HTAB.pack(buckets, n, 0))
        return htab
