"""Maps in the VM: hash, array, their per-CPU and LRU variants, and global-data maps.

Values live in one bytearray per map, registered as a VM memory region, so the pointer that
bpf_map_lookup_elem returns is a real, bounds-checked address. Semantics follow the kernel's
(kernel/bpf/arraymap.c, hashtab.c): array elements are 8-byte aligned and always exist (delete is
EINVAL, NOEXIST is EEXIST), a preallocated hash replaces an element by taking a fresh slot (an old
value pointer keeps seeing the old bytes) and is full at max_entries (E2BIG).

The VM runs programs on ONE CPU, CPU 0: BPF sees CPU 0's copy of a per-CPU value. User space
sees what the kernel back end shows: a list with one value per possible CPU (an update from user
space writes every CPU's copy; a new element from BPF starts zeroed on the other CPUs). LRU hashes
evict the least recently used element when full (the kernel's LRU is per-CPU and approximate).
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..collection import Map
from ..errors import MapError
from .memory import MAP_HANDLE_BASE, Memory, Region

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_ARENA = 33

ARRAY_TYPES = {BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY}
HASH_TYPES = {BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_HASH,
              BPF_MAP_TYPE_LRU_PERCPU_HASH}
LRU_TYPES = {BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH}
SUPPORTED = ARRAY_TYPES | HASH_TYPES

PERCPU_TYPES = {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                BPF_MAP_TYPE_LRU_PERCPU_HASH}

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
M64 = (1 << 64) - 1


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Possible CPUs, as the kernel sizes per-CPU values (/sys/devices/system/cpu/possible)."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
        return max(int(p.partition("-")[2] or p) for p in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def _err(name: str, what: str, err: int) -> MapError:
    return MapError(f"map {name!r}: {what}", err)


class VMMap(Map):
    """A map of the VM; `handle` is the value an ld_imm64 of the map loads."""

    backend = "vm"

    def __init__(self, memory: Memory, index: int, name: str, type: int, key_size: int,
                 value_size: int, max_entries: int, flags: int = 0, readonly: bool = False,
                 initial: bytes | None = None) -> None:
        if type not in SUPPORTED:
            from ..errors import NotSupportedError
            raise NotSupportedError(f"map type {type} (map {name!r})",
                                    "the VM has hash, array, per-CPU and LRU hash maps")
        if max_entries <= 0 or value_size <= 0 or (key_size <= 0):
            raise _err(name, f"bad sizes (key {key_size}, value {value_size}, "
                       f"max_entries {max_entries})", errno.EINVAL)
        if type in ARRAY_TYPES and key_size != 4:
            raise _err(name, "an array map needs 4-byte keys", errno.EINVAL)
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.readonly = readonly
        self.handle = MAP_HANDLE_BASE + (index << 12)
        self.stride = (value_size + 7) & ~7
        self._mem = memory
        self.closed = False
        self.percpu = type in PERCPU_TYPES
        self._others: dict[bytes, list[bytes]] = {}  # per-CPU maps: CPUs 1.. written by users
        self.is_array = type in ARRAY_TYPES
        if self.is_array:
            buf = bytearray(self.stride * max_entries)
            if initial is not None:
                buf[:len(initial)] = initial
            self.region: Region = memory.add_region(f"map {name!r}", buf, readonly=readonly)
        else:
            # slots are handed out lazily; the buffer grows as they are
            self.region = memory.add_region(f"map {name!r}", bytearray(), 0)
            self._capacity = max_entries + 1  # the kernel keeps spare elements for replacement
            self._slots: OrderedDict[bytes, int] = OrderedDict()
            self._free: list[int] = []
            self._used = 0
            self.lru = type in LRU_TYPES

    # --- the BPF side -----------------------------------------------------------------------------
    def value_addr(self, key: bytes) -> int:
        """bpf_map_lookup_elem: the value's address, or 0."""
        if self.is_array:
            idx = int.from_bytes(key, "little")
            if idx >= self.max_entries:
                return 0
            return self.region.base + idx * self.stride
        slot = self._slots.get(key)
        if slot is None:
            return 0
        if self.lru:
            self._slots.move_to_end(key)
        return self.region.base + slot * self.stride

    def update_raw(self, key: bytes, value: bytes, flags: int) -> int:
        """bpf_map_update_elem: 0 or a negative errno."""
        if flags & ~0x7 or (flags & 3) == 3:
            return -errno.EINVAL
        if flags & 4:  # BPF_F_LOCK needs a bpf_spin_lock in the value
            return -errno.EINVAL
        if self.is_array:
            idx = int.from_bytes(key, "little")
            if idx >= self.max_entries:
                return -errno.E2BIG
            if flags == BPF_NOEXIST:
                return -errno.EEXIST
            off = idx * self.stride
            self.region.buf[off:off + self.value_size] = value
            return 0
        old = self._slots.get(key)
        if old is None and flags == BPF_EXIST:
            return -errno.ENOENT
        if old is not None and flags == BPF_NOEXIST:
            return -errno.EEXIST
        if old is None and len(self._slots) >= self.max_entries:
            if not self.lru:
                return -errno.E2BIG
            victim, vslot = self._slots.popitem(last=False)
            self._free.append(vslot)
        slot = self._take_slot()
        off = slot * self.stride
        buf = self.region.buf
        buf[off:off + self.stride] = bytes(value) + bytes(self.stride - self.value_size)
        if old is not None:
            del self._slots[key]
            self._free.append(old)
        elif self.percpu:
            self._others.pop(key, None)  # a new element: the other CPUs' copies start zeroed
        self._slots[key] = slot
        return 0

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        slot = self._used
        self._used += 1
        self.region.buf.extend(bytes(self.stride))
        self.region.size = len(self.region.buf)
        return slot

    def delete_raw(self, key: bytes) -> int:
        if self.is_array:
            return -errno.EINVAL
        slot = self._slots.pop(key, None)
        if slot is None:
            return -errno.ENOENT
        self._free.append(slot)
        self._others.pop(key, None)
        return 0

    # --- Map primitives (user space) ----------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise _err(self.name, "the collection is closed", errno.EBADF)

    def _lookup(self, key: bytes) -> Any:
        self._check_open()
        v = self._lookup0(key)
        if v is None or not self.percpu:
            return v
        zero = bytes(self.value_size)
        return [v] + self._others.get(key, [zero] * (possible_cpus() - 1))

    def _lookup0(self, key: bytes) -> bytes | None:
        if self.is_array:
            idx = int.from_bytes(key, "little")
            if idx >= self.max_entries:
                return None
            off = idx * self.stride
            return bytes(self.region.buf[off:off + self.value_size])
        slot = self._slots.get(key)
        if slot is None:
            return None
        off = slot * self.stride
        return bytes(self.region.buf[off:off + self.value_size])

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_open()
        if self.readonly:
            raise _err(self.name, "the map is frozen (read-only)", errno.EPERM)
        rc = self.update_raw(key, value, flags)
        if rc:
            raise _err(self.name, f"update failed (flags {flags})", -rc)
        if self.percpu:  # user space writes the value to every CPU
            self._others[key] = [bytes(value)] * (possible_cpus() - 1)

    def _delete(self, key: bytes) -> bool:
        self._check_open()
        rc = self.delete_raw(key)
        if rc == -errno.ENOENT:
            return False
        if rc:
            raise _err(self.name, "delete is not allowed on an array map", -rc)
        return True

    def _keys(self) -> Iterator[bytes]:
        self._check_open()
        if self.is_array:
            for i in range(self.max_entries):
                yield i.to_bytes(4, "little")
            return
        yield from list(self._slots)

    def __len__(self) -> int:
        return self.max_entries if self.is_array else len(self._slots)


class VMArenaMap(Map):
    """The arena as an entry of `obj.maps`, as on the kernel: it has no elements; element calls
    fail with the errnos bpf(2) gives here (lookup, update, delete EINVAL; get_next_key
    EOPNOTSUPP)."""

    backend = "vm"

    def __init__(self, name: str, max_entries: int, flags: int) -> None:
        self.name = name
        self.type = BPF_MAP_TYPE_ARENA
        self.key_size = 0
        self.value_size = 0
        self.max_entries = max_entries
        self.flags = flags
        self.closed = False

    def _fail(self, what: str, err: int) -> MapError:
        if self.closed:
            return _err(self.name, "the collection is closed", errno.EBADF)
        return _err(self.name, f"{what} is not an arena operation", err)

    def _lookup(self, key: bytes) -> bytes | None:
        raise self._fail("lookup", errno.EINVAL)

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        raise self._fail("update", errno.EINVAL)  # bpf(2) refuses the zero-size key first

    def _delete(self, key: bytes) -> bool:
        raise self._fail("delete", errno.EINVAL)

    def _keys(self) -> Iterator[bytes]:
        raise self._fail("get_next_key", errno.EOPNOTSUPP)
