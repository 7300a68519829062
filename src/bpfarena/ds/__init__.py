"""Data structures over an arena on the Python side, layout-compatible with include/*.h.

- `ArenaAllocator`: arena_alloc.h's page layout (objects carved downward, a live-object counter
  in the last 8 bytes of each page), on pages Python takes with `arena.alloc_pages`.
- `ArenaList`: arena_list.h's hlist (nodes {next, pprev}, head {first}).
- `ArenaHashTable`: arena_htab.h's hash table of lists.

Python writes pointers in user form, as clang-compiled BPF code stores them, and follows stored
pointers in user or 32-bit form.
"""

from .alloc import ArenaAllocator, Batch
from .htab import ELEM_DTYPE, ArenaHashTable
from .list import ArenaList

__all__ = ["ELEM_DTYPE", "ArenaAllocator", "ArenaHashTable", "ArenaList", "Batch"]
