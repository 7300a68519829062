"""`KernelMap`: a live kernel map behind the back-end-neutral Map interface."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from .. import _sys
from ..collection import Map
from ..errors import MapError
from .owned import FdObject

HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH = 1, 2, 5, 6, 9, 10
PERCPU_TYPES = {PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH}
HASH_TYPES = {HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH}
_RAISE = object()  # _call(missing=...) default: ENOENT is an error like any other


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs: the stride count of a per-CPU value buffer."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class KernelMap(FdObject, Map):
    """A kernel map owning its Fd. Per-CPU maps read as a list of per-CPU values and write one
    value to every CPU."""

    backend = "kernel"
    kind = "map"
    closed_error = MapError

    def __init__(self, fd: _sys.Fd, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0) -> None:
        super().__init__(fd)
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.percpu = map_type in PERCPU_TYPES
        self._stride = (value_size + 7) // 8 * 8

    def _wrap(self, what: str, e: MapError) -> MapError:
        if what == "delete" and e.errno == errno.EINVAL and self.type in (ARRAY, PERCPU_ARRAY):
            return MapError(f"map {self.name!r}: array elements cannot be deleted", e.errno)
        return MapError(f"map {self.name!r}: {what} failed", e.errno)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, missing: Any = _RAISE) -> Any:
        """One `_sys` element call on this map; ENOENT gives `missing` (if given), any other
        failure a MapError naming the map and the operation."""
        fd = self.fileno()
        try:
            return fn(fd, *args)
        except MapError as e:
            if e.errno == errno.ENOENT and missing is not _RAISE:
                return missing
            raise self._wrap(what, e) from None

    def _vsize(self) -> int:
        return self._stride * possible_cpus() if self.percpu else self.value_size

    def _split(self, raw: bytes) -> bytes | list[bytes]:
        if not self.percpu:
            return raw
        return [raw[i * self._stride:i * self._stride + self.value_size]
                for i in range(possible_cpus())]

    def _lookup(self, key: bytes):  # -> bytes | list[bytes] | None
        raw = self._call("lookup", _sys.map_lookup_elem, key, self._vsize(), missing=None)
        return None if raw is None else self._split(raw)

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        if self.percpu:
            value = (value.ljust(self._stride, b"\0")) * possible_cpus()
        self._call("update", _sys.map_update_elem, key, value, flags)

    def _delete(self, key: bytes) -> bool:
        # map_delete_elem returns None; `missing=False` stands for a key that was not there
        return self._call("delete", _sys.map_delete_elem, key, missing=False) is None

    def _keys(self) -> Iterator[bytes]:
        key = None
        while (key := self._call("get_next_key", _sys.map_get_next_key, key, self.key_size,
                                 missing=None)) is not None:
            yield key

    def lookup_batch(self, count: int = 0) -> list[tuple[bytes, bytes]]:
        """Every (key, value) pair with BPF_MAP_LOOKUP_BATCH, falling back to iteration where the
        map type has no batch operation."""
        count = count or max(1, min(self.max_entries, 4096))
        out: list[tuple[bytes, bytes]] = []
        token: bytes | None = None
        fd = self.fileno()
        while True:
            try:
                r = _sys.map_lookup_batch(fd, self.key_size, self._vsize(), count, token)
            except MapError as e:
                if e.errno == errno.ENOSPC:  # a bucket holds more than `count` entries
                    count *= 2
                    continue
                if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, _sys.ENOTSUPP) and not out:
                    return list(self.items())
                raise self._wrap("lookup_batch", e) from None
            out.extend((k, self._split(v)) for k, v in zip(r.keys, r.values, strict=True))
            if r.done:
                return out
            token = r.out_batch
