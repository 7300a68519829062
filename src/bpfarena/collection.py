"""Back-end-neutral live objects: Collection, Program, Map, RunResult, GlobalVariables.

A back end loads an ObjectSpec into a Collection; tests, examples and users see only these
interfaces, so one argument (`backend=`) picks where programs run.
"""

from __future__ import annotations

import errno
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import MapError

if TYPE_CHECKING:  # pragma: no cover
    from .arena import Arena
    from .btf import BTF


def default_packet() -> bytes:
    """The 64-byte IPv4/TCP frame a packet program runs on when `run()` gets no data, on every
    back end: enough for the kernel's minimum packet checks."""
    eth = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 50, 0, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 0, 0, 0x50, 0x02, 1024, 0, 0)
    return (eth + ip + tcp).ljust(64, b"\0")


@dataclass(frozen=True)
class RunResult:
    """What one BPF_PROG_TEST_RUN (or VM run) gave back."""

    retval: int
    duration_ns: int
    ctx_out: bytes = b""
    data_out: bytes = b""
    output: str = ""  # bpf_printk / trace_printk text where the back end can capture it
    insns: int = 0  # instructions executed (VM only; 0 when unknown)


class Program(ABC):
    """A loaded program. Back ends implement `run`."""

    name: str
    section: str
    backend: str
    log: str = ""  # the verifier's log of a successful load (kernel, when log_level asked for it)

    @abstractmethod
    def run(self, ctx: bytes = b"", repeat: int = 1, data: bytes = b"") -> RunResult:
        """Run once (or `repeat` times) and report."""


class Map(ABC):
    """A live map. Keys and values are bytes, or ints packed to the map's key/value size."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    backend: str

    # -- primitives a back end supplies (bytes in, bytes out; None when absent) --
    @abstractmethod
    def _lookup(self, key: bytes) -> bytes | None:
        """Back-end primitive."""

    @abstractmethod
    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        """Back-end primitive."""

    @abstractmethod
    def _delete(self, key: bytes) -> bool:
        """Back-end primitive."""

    @abstractmethod
    def _keys(self) -> Iterator[bytes]:
        """Back-end primitive."""

    # -- the user-facing API --
    def _pack(self, v: Any, size: int, what: str) -> bytes:
        if isinstance(v, int):
            return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        b = bytes(v)
        if len(b) != size:
            raise MapError(f"map {self.name!r}: {what} must be {size} bytes, got {len(b)}", errno.EINVAL)
        return b

    def lookup(self, key: Any, default: Any = None) -> bytes | None:
        v = self._lookup(self._pack(key, self.key_size, "key"))
        return default if v is None else v

    def __getitem__(self, key: Any) -> bytes:
        v = self._lookup(self._pack(key, self.key_size, "key"))
        if v is None:
            raise KeyError(key)
        return v

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        self._update(self._pack(key, self.key_size, "key"),
                     self._pack(value, self.value_size, "value"), flags)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def delete(self, key: Any) -> bool:
        return self._delete(self._pack(key, self.key_size, "key"))

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def keys(self) -> Iterator[bytes]:
        return self._keys()

    def __iter__(self) -> Iterator[bytes]:
        return self._keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in list(self._keys()):
            v = self._lookup(k)
            if v is not None:
                yield k, v

    def lookup_batch(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value) pair; kernel back ends use BPF_MAP_LOOKUP_BATCH where they can."""
        return list(self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self._keys())

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} type={self.type} key={self.key_size} "
                f"value={self.value_size} max={self.max_entries}>")


class GlobalVariables:
    """`.data`, `.bss`, `.rodata` (and other global-data sections) variables by name, typed by BTF."""

    def __init__(self, btf: BTF | None) -> None:
        self._btf = btf
        # name -> (map holding it, offset in the value, size, BTF type id)
        self._vars: dict[str, tuple[Map, int, int, int]] = {}

    def _add(self, name: str, m: Map, offset: int, size: int, type_id: int) -> None:
        self._vars[name] = (m, offset, size, type_id)

    def _lookup(self, name: str) -> tuple[Map, int, int, int]:
        try:
            return self._vars[name]
        except KeyError:
            raise KeyError(f"no global variable named {name!r}; have {sorted(self._vars)}") from None

    def raw(self, name: str) -> bytes:
        m, off, size, _ = self._lookup(name)
        return m[0][off:off + size]

    def __getitem__(self, name: str) -> Any:
        from .view.values import decode_value
        _m, _off, _size, tid = self._lookup(name)
        return decode_value(self._btf, tid, self.raw(name))

    def __setitem__(self, name: str, value: Any) -> None:
        from .view.values import encode_value
        m, off, size, tid = self._lookup(name)
        cur = bytearray(m[0])
        cur[off:off + size] = encode_value(self._btf, tid, value, size)
        m.update(0, bytes(cur))

    def __contains__(self, name: object) -> bool:
        return name in self._vars

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def keys(self):
        return self._vars.keys()


@dataclass
class Collection:
    """Live programs, maps and at most one arena, loaded from one object by one back end."""

    backend: str
    programs: dict[str, Program] = field(default_factory=dict)
    maps: dict[str, Map] = field(default_factory=dict)
    arena: Arena | None = None
    globals: GlobalVariables = field(default_factory=lambda: GlobalVariables(None))
    btf: BTF | None = None
    spec: Any = None
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for c in reversed(self._closers):
            try:
                c()
            except Exception:
                pass
        self._closers.clear()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Collection backend={self.backend} programs={sorted(self.programs)} "
                f"maps={sorted(self.maps)} arena={self.arena!r}>")
