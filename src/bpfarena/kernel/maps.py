"""`KernelMap`: a live kernel map behind the back-end-neutral Map interface."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from functools import lru_cache

from .._sys import loadcmds as bpf
from ..collection import Map
from ..errors import MapError

HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH = 1, 2, 5, 6, 9, 10
PERCPU_TYPES = {PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH}
HASH_TYPES = {HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH}
ENOTSUPP = 524  # the kernel-internal "not supported" some map types return


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs: the stride count of a per-CPU value buffer."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        import os
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class KernelMap(Map):
    """A kernel map by fd. Per-CPU maps read as a list of per-CPU values and write one value to
    every CPU."""

    backend = "kernel"

    def __init__(self, fd: int, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0) -> None:
        self.fd = fd
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.percpu = map_type in PERCPU_TYPES
        self._stride = (value_size + 7) // 8 * 8
        self._closed = False

    def fileno(self) -> int:
        if self._closed:
            raise MapError(f"map {self.name!r} is closed", errno.EBADF)
        return self.fd

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            bpf.close(self.fd)

    def _wrap(self, what: str, e: bpf.BpfError) -> MapError:
        return MapError(f"map {self.name!r}: {what} failed", e.errno)

    def _vsize(self) -> int:
        return self._stride * possible_cpus() if self.percpu else self.value_size

    def _split(self, raw: bytes) -> bytes | list[bytes]:
        if not self.percpu:
            return raw
        return [raw[i * self._stride:i * self._stride + self.value_size]
                for i in range(possible_cpus())]

    def _lookup(self, key: bytes):  # -> bytes | list[bytes] | None
        try:
            raw = bpf.map_lookup(self.fileno(), key, self._vsize())
        except bpf.BpfError as e:
            raise self._wrap("lookup", e) from None
        return None if raw is None else self._split(raw)

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        if self.percpu:
            value = (value.ljust(self._stride, b"\0")) * possible_cpus()
        try:
            bpf.map_update(self.fileno(), key, value, flags)
        except bpf.BpfError as e:
            raise self._wrap("update", e) from None

    def _delete(self, key: bytes) -> bool:
        try:
            return bpf.map_delete(self.fileno(), key)
        except bpf.BpfError as e:
            if self.type in (ARRAY, PERCPU_ARRAY) and e.errno == errno.EINVAL:
                raise MapError(f"map {self.name!r}: array elements cannot be deleted",
                               e.errno) from None
            raise self._wrap("delete", e) from None

    def _keys(self) -> Iterator[bytes]:
        key = None
        while True:
            try:
                nk = bpf.map_next_key(self.fileno(), key, self.key_size)
            except bpf.BpfError as e:
                raise self._wrap("get_next_key", e) from None
            if nk is None:
                return
            yield nk
            key = nk

    def lookup_batch(self, count: int = 0) -> list[tuple[bytes, bytes]]:
        """Every (key, value) pair with BPF_MAP_LOOKUP_BATCH, falling back to iteration where the
        map type has no batch operation."""
        count = count or max(1, min(self.max_entries, 4096))
        out: list[tuple[bytes, bytes]] = []
        token: bytes | None = None
        tsize = max(8, self.key_size)
        while True:
            try:
                ks, vs, token = bpf.map_lookup_batch(self.fileno(), self.key_size,
                                                     self._vsize(), count, token, tsize)
            except bpf.BpfError as e:
                if e.errno == errno.ENOSPC:  # a bucket holds more than `count` entries
                    count *= 2
                    continue
                if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP) and not out:
                    return list(self.items())
                raise self._wrap("lookup_batch", e) from None
            out.extend((k, self._split(v)) for k, v in zip(ks, vs, strict=True))
            if token is None:
                return out
