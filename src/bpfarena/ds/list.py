"""`ArenaList`: include/arena_list.h's hlist, built and walked from Python.

A node is {u64 next; u64 pprev} and a head is {u64 first}; `next`/`first` hold the user-form
address of the next node, `pprev` the address of the pointer that points at this node. Walking
accepts stored pointers in user or 32-bit form, as BPF code may store either.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import ArenaError
from ._mem import ArenaMemory
from .alloc import ArenaAllocator

__all__ = ["ArenaList", "LIST_ELEM_SIZE", "LIST_VALUE_OFFSET", "NODE_SIZE"]

NODE_SIZE = 16
# the default element: struct { struct arena_list_node node; __u64 value; } (examples, tests)
LIST_ELEM_SIZE = 24
LIST_VALUE_OFFSET = 16
_NODE = struct.Struct("<QQ")


class ArenaList:
    """A list in the arena, starting at the head at `head` (user or 32-bit address).

    `node_offset` is where the node sits inside each element: iteration yields element addresses
    (node - node_offset). `max_len` bounds a walk so a corrupted (cyclic) list raises instead of
    looping; by default it is the most nodes the arena could hold.
    """

    def __init__(self, arena, head: int, node_offset: int = 0, max_len: int | None = None) -> None:
        self.arena = arena
        self.mem = ArenaMemory(arena)
        self.head = arena.to_user(arena.to_kern(head)) or head
        self.mem.offset(self.head, 8, "list head")
        self.node_offset = node_offset
        self.max_len = max_len if max_len is not None else arena.size // NODE_SIZE

    # --- walking --------------------------------------------------------------------------------
    def nodes(self) -> Iterator[int]:
        """User addresses of the nodes, front to back."""
        mem, to_user = self.mem, self.arena.to_user
        p = mem.u64(self.head, "list head")
        n = 0
        while p:
            n += 1
            if n > self.max_len:
                raise ArenaError(f"list at 0x{self.head:x} is longer than {self.max_len} nodes "
                                 "(a cycle?)", errno.ELOOP, self.head)
            node = to_user(p & 0xFFFFFFFF)
            yield node
            p = mem.u64(node, "list node")

    def __iter__(self) -> Iterator[int]:
        off = self.node_offset
        return (n - off for n in self.nodes())

    def __len__(self) -> int:
        return sum(1 for _ in self.nodes())

    def values(self, offset: int = LIST_VALUE_OFFSET, fmt: str = "<Q") -> list[int]:
        """The field at `offset` (struct format `fmt`) of every element, front to back."""
        st = struct.Struct(fmt)
        unpack = self.mem.unpack
        return [unpack(st, e + offset, "list element")[0] for e in self]

    def check_links(self) -> None:
        """Raise ArenaError unless every node's pprev points back at what points at it."""
        expect = self.head
        for node in self.nodes():
            _nxt, pprev = self.mem.unpack(_NODE, node)
            if self.arena.to_kern(pprev) != self.arena.to_kern(expect):
                raise ArenaError(f"node 0x{node:x}: pprev 0x{pprev:x}, expected 0x{expect:x}",
                                 errno.EINVAL, node)
            expect = node  # the next node's pprev must point at this node's `next` (offset 0)

    # --- changing it from Python -----------------------------------------------------------
    def add_head(self, elem: int) -> None:
        """Insert the element at `elem` at the front, as arena_list_add_head does."""
        a = self.arena
        node = a.to_user(a.to_kern(elem)) + self.node_offset
        first = self.mem.u64(self.head, "list head")
        a.write(node, _NODE.pack(first, self.head))
        if first:
            a.write_u64(a.to_user(a.to_kern(first)) + 8, node)
        a.write_u64(self.head, node)

    def delete(self, elem: int) -> None:
        """Unlink the element at `elem`, as arena_list_del does (its links become 0)."""
        a = self.arena
        node = a.to_user(a.to_kern(elem)) + self.node_offset
        nxt, pprev = self.mem.unpack(_NODE, node, "list node")
        if pprev:
            a.write_u64(a.to_user(a.to_kern(pprev)), nxt)
        if nxt:
            a.write_u64(a.to_user(a.to_kern(nxt)) + 8, pprev)
        a.write(node, bytes(NODE_SIZE))

    @classmethod
    def build(cls, arena, values: Iterable[int], head: int | None = None, *,
              allocator: ArenaAllocator | None = None, elem_size: int = LIST_ELEM_SIZE,
              value_offset: int = LIST_VALUE_OFFSET, value_dtype: str = "<u8",
              node_offset: int = 0) -> int:
        """Put `values` into new elements and link them in front of the list at `head`.

        The list then walks in the order given (as if the C side had called add_head for each
        value from last to first), followed by whatever the list held before. `head` is a list
        head in the arena (e.g. an arena global's address); None allocates one. Returns the
        head's user address. Pages are written in bulk, one write per run of pages.
        """
        alloc = allocator or ArenaAllocator(arena)
        if head is None:
            head = alloc.alloc(8)
            arena.write_u64(head, 0)
        head = arena.to_user(arena.to_kern(head)) or head
        mem = ArenaMemory(arena)
        old_first = mem.u64(head, "list head")
        dt = np.dtype(value_dtype)
        if value_offset + dt.itemsize > elem_size or node_offset + NODE_SIZE > elem_size:
            raise ArenaError(f"element of {elem_size} bytes cannot hold the node at "
                             f"{node_offset} and the value at {value_offset}", errno.EINVAL)
        try:
            vals = np.asarray(list(values), dtype=dt)
        except (OverflowError, ValueError) as e:
            raise ArenaError(f"list values do not fit {value_dtype}: {e}", errno.EINVAL) from e
        n = len(vals)
        if n == 0:
            return head
        batch = alloc.alloc_many(n, elem_size)
        nodes = batch.addrs + np.uint64(node_offset)
        nxt = np.empty(n, dtype=np.uint64)
        nxt[:-1] = nodes[1:]
        nxt[-1] = old_first
        pprev = np.empty(n, dtype=np.uint64)
        pprev[0] = head
        pprev[1:] = nodes[:-1]  # the previous node's `next` field sits at offset 0
        rows = np.zeros((n, batch.size), dtype=np.uint8)
        rows[:, node_offset:node_offset + 8] = nxt.view(np.uint8).reshape(n, 8)
        rows[:, node_offset + 8:node_offset + 16] = pprev.view(np.uint8).reshape(n, 8)
        rows[:, value_offset:value_offset + dt.itemsize] = (
            vals.astype(dt.newbyteorder("<")).view(np.uint8).reshape(n, dt.itemsize))
        batch.write(rows)
        if old_first:
            arena.write_u64(arena.to_user(arena.to_kern(old_first)) + 8, int(nodes[-1]))
        arena.write_u64(head, int(nodes[0]))
        return head
