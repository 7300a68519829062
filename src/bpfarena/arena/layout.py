"""Arena address math shared by both back ends (ARENA_FACTS.md sections 1, 2 and 5).

Pure functions: no OS access. The kernel keeps arena pointers as 32-bit offsets; user space sees the
same byte at `(user_vm_start & ~0xffffffff) | offset`.
"""

from __future__ import annotations

import errno

from ..errors import ArenaError

PAGE_SIZE = 4096
PAGE_SHIFT = 12
MAX_PAGES = 1 << 20  # 4 GiB of 4 KiB pages
GUARD_SZ = 1 << 16

BPF_MAP_TYPE_ARENA = 33
BPF_F_MMAPABLE = 1 << 10
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18
ARENA_FLAGS_ALLOWED = BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV

# addr_space_cast immediates (dst_as << 16 | src_as)
CAST_KERN = 1
CAST_USER = 0x10000

U32 = 0xFFFFFFFF


def check_create(pages: int, map_extra: int, flags: int) -> None:
    """Apply the kernel's create-time rules (map_create/arena_map_alloc), raising ArenaError."""
    if not isinstance(pages, int) or isinstance(pages, bool):
        raise ArenaError(f"the page count must be an int, got {type(pages).__name__} {pages!r}",
                         errno.EINVAL)
    if pages <= 0:
        raise ArenaError(f"an arena needs at least one page (got {pages})", errno.EINVAL)
    if pages > MAX_PAGES:
        raise ArenaError(
            f"an arena holds at most {MAX_PAGES} pages (4 GiB); {pages} pages is too many", errno.E2BIG)
    if flags & ~ARENA_FLAGS_ALLOWED:
        raise ArenaError(f"unknown arena flags 0x{flags & ~ARENA_FLAGS_ALLOWED:x}", errno.EINVAL)
    if not flags & BPF_F_MMAPABLE:
        raise ArenaError("an arena must be created with BPF_F_MMAPABLE", errno.EINVAL)
    if map_extra < 0 or map_extra >= 1 << 64:
        raise ArenaError(f"user_vm_start 0x{map_extra:x} is not a 64-bit address", errno.EINVAL)
    if map_extra % PAGE_SIZE:
        raise ArenaError(f"user_vm_start 0x{map_extra:x} is not page aligned", errno.EINVAL)
    if map_extra and (map_extra >> 32) != ((map_extra + pages * PAGE_SIZE - 1) >> 32):
        raise ArenaError(
            f"arena [0x{map_extra:x}, +{pages * PAGE_SIZE:#x}) would cross a 4 GiB boundary",
            errno.ERANGE)


def to_user(user_vm_start: int, ptr: int, no_user_conv: bool = False) -> int:
    """cast_user: 0 stays 0, else the upper half of user_vm_start joins the low 32 bits."""
    v = ptr & U32
    if no_user_conv or v == 0:
        return v
    return (user_vm_start & ~U32 & ((1 << 64) - 1)) | v


def to_kern(addr: int) -> int:
    """cast_kern: keep the low 32 bits."""
    return addr & U32


def pgoff(user_vm_start: int, addr: int) -> int:
    """Page index of an address in either form, as the kernel computes it."""
    return ((addr - user_vm_start) & U32) >> PAGE_SHIFT


def page_user_addr(user_vm_start: int, index: int) -> int:
    """The full user address of page `index` (the range never crosses 4 GiB)."""
    return user_vm_start + index * PAGE_SIZE


def choose_start(map_extra: int, requested: int | None, name: str = "arena") -> int | None:
    """Where a loaded object's arena goes: its map_extra fixes the address; `requested` (a load
    option) chooses it only when map_extra is 0. A conflicting request is refused, not ignored."""
    if map_extra and requested and requested != map_extra:
        raise ArenaError(f"user_vm_start=0x{requested:x} conflicts with the object: arena "
                         f"{name!r} fixes its address at map_extra 0x{map_extra:x}",
                         errno.EINVAL, requested)
    return map_extra or requested or None
