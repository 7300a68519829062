"""The front-end `Arena`: one class users see, whichever back end holds the memory.

`Arena(pages, backend=...)` builds the back end's subclass; subclasses supply the primitives
(`_read`, `_write`, `_buffer`, page operations) and inherit the checked, user-facing API.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ..errors import ArenaError
from . import layout
from .layout import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from ..btf import BTF


class Arena(ABC):
    """A BPF arena: up to 4 GiB of sparse memory shared by BPF programs and user space."""

    backend: str = "?"

    def __new__(cls, *args: Any, backend: str = "kernel", **kwargs: Any) -> Arena:
        if cls is Arena:
            cls = _backend_class(backend)
        return super().__new__(cls)

    # --- properties every back end sets in __init__ -------------------------------------------
    _user_vm_start: int
    _max_pages: int
    _flags: int
    _name: str | None
    _closed: bool = False
    _globals: ArenaGlobals | None = None

    @property
    def user_vm_start(self) -> int:
        return self._user_vm_start

    @property
    def user_vm_end(self) -> int:
        return self._user_vm_start + self.size

    @property
    def size(self) -> int:
        return self._max_pages * PAGE_SIZE

    @property
    def max_pages(self) -> int:
        return self._max_pages

    @property
    def flags(self) -> int:
        return self._flags

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    # --- addresses ------------------------------------------------------------------------------
    def to_user(self, ptr32: int) -> int:
        """The user (stored) form of an arena pointer, as cast_user makes it."""
        return layout.to_user(self._user_vm_start, ptr32,
                              bool(self._flags & layout.BPF_F_NO_USER_CONV))

    def to_kern(self, addr: int) -> int:
        """The BPF (32-bit) form of an arena address, as cast_kern makes it."""
        return layout.to_kern(addr)

    def offset(self, addr: int) -> int:
        """Byte offset of `addr` (user form, or 32-bit form) from the arena start."""
        return (addr - self._user_vm_start) & layout.U32

    def contains(self, addr: int, n: int = 1) -> bool:
        off = self.offset(addr)
        return n >= 0 and off + n <= self.size

    def _check_range(self, addr: int, n: int) -> int:
        self._check_open()
        if n < 0:
            raise ArenaError(f"negative length {n}", errno.EINVAL)
        off = self.offset(addr)
        if off + n > self.size:
            raise ArenaError(
                f"range 0x{addr:x}+{n} is outside the arena "
                f"[0x{self.user_vm_start:x}, 0x{self.user_vm_end:x})", errno.EFAULT, addr)
        return off

    def _check_open(self) -> None:
        if self._closed:
            raise ArenaError("the arena is closed", errno.EBADF)

    # --- data -----------------------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        """Read n bytes at a user address (or 32-bit arena pointer); untouched pages read zero."""
        off = self._check_range(addr, n)
        return self._read(off, n)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes at a user address (or 32-bit arena pointer), faulting pages in as needed."""
        data = bytes(data)
        off = self._check_range(addr, len(data))
        self._write(off, data)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & (1 << 64) - 1).to_bytes(8, "little"))

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def memoryview(self) -> memoryview:
        """Zero-copy view of the whole arena (index 0 = user_vm_start).

        Touching an unallocated page through it allocates a zeroed page, as a user fault does.
        With BPF_F_SEGV_ON_FAULT such a touch is a real SIGSEGV in the kernel back end: use
        read()/write(), which check first.
        """
        self._check_open()
        return self._buffer()

    def numpy(self, dtype: Any = "u1", addr: int | None = None, count: int = -1) -> Any:
        """A zero-copy NumPy array over arena memory starting at `addr` (default: arena start)."""
        import numpy as np

        off = 0 if addr is None else self._check_range(addr, 0)
        dt = np.dtype(dtype)
        buf = self.memoryview()
        if count < 0:
            count = (self.size - off) // dt.itemsize
        self._check_range(self._user_vm_start + off, count * dt.itemsize)
        return np.frombuffer(buf, dtype=dt, count=count, offset=off)

    # --- pages ------------------------------------------------------------------------------------
    def alloc_pages(self, count: int, addr: int | None = None, node: int = -1) -> int:
        """Allocate pages as bpf_arena_alloc_pages does; returns the user address.

        Raises ArenaError (ENOMEM) where the kfunc would return NULL.
        """
        self._check_open()
        ptr = self._alloc_pages(count, addr, node)
        if not ptr:
            where = f" at 0x{addr:x}" if addr else ""
            raise ArenaError(f"bpf_arena_alloc_pages could not allocate {count} page(s){where}",
                             errno.ENOMEM, addr)
        return ptr

    def free_pages(self, addr: int, count: int) -> None:
        """Free pages as bpf_arena_free_pages does: they read back as zero everywhere."""
        self._check_open()
        self._free_pages(addr, count)

    def reserve_pages(self, addr: int, count: int) -> None:
        """Reserve pages as bpf_arena_reserve_pages does; raises ArenaError with its errno."""
        self._check_open()
        rc = self._reserve_pages(addr, count)
        if rc:
            raise ArenaError(f"bpf_arena_reserve_pages(0x{addr:x}, {count}) failed", -rc, addr)

    def resident_pages(self) -> int:
        """Pages allocated now (by BPF, by reservation-free user faults, or by user touches)."""
        self._check_open()
        return self._resident_pages()

    # --- globals and views ------------------------------------------------------------------------
    @property
    def globals(self) -> ArenaGlobals:
        if self._globals is None:
            raise ArenaError("this arena holds no arena globals (.addr_space.1)", errno.ENOENT)
        return self._globals

    def view(self, ptr: int, type_name: str, btf: BTF | None = None) -> Any:
        """A typed, pointer-following view of arena memory at `ptr` (a user or 32-bit pointer)."""
        from ..view import view as _view

        btf = btf if btf is not None else getattr(self, "_btf", None)
        if btf is None:
            raise ArenaError("no BTF to type the view with: pass btf=", errno.EINVAL)
        return _view(self, ptr, type_name, btf)

    # --- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"0x{self._user_vm_start:x}"
        return f"<{type(self).__name__} {self._max_pages} pages at {state} flags=0x{self._flags:x}>"

    # --- primitives each back end supplies ----------------------------------------------------
    @abstractmethod
    def _read(self, off: int, n: int) -> bytes:
        """Back-end primitive."""

    @abstractmethod
    def _write(self, off: int, data: bytes) -> None:
        """Back-end primitive."""

    @abstractmethod
    def _buffer(self) -> memoryview:
        """Back-end primitive."""

    @abstractmethod
    def _alloc_pages(self, count: int, addr: int | None, node: int) -> int:
        """Back-end primitive."""

    @abstractmethod
    def _free_pages(self, addr: int, count: int) -> None:
        """Back-end primitive."""

    @abstractmethod
    def _reserve_pages(self, addr: int, count: int) -> int:
        """Back-end primitive."""

    @abstractmethod
    def _resident_pages(self) -> int:
        """Back-end primitive."""

    @abstractmethod
    def _close(self) -> None:
        """Back-end primitive."""

    @classmethod
    def open(cls, *, map_id: int | None = None, pinned: str | None = None,
             backend: str = "kernel") -> Arena:
        """Attach to an arena another process created (kernel back end)."""
        if backend != "kernel":
            from ..errors import NotSupportedError
            raise NotSupportedError("Arena.open", f"backend {backend!r} cannot attach to arenas")
        from ..kernel.arena import KernelArena
        return KernelArena._open(map_id=map_id, pinned=pinned)


class ArenaGlobals:
    """Arena globals (.addr_space.1) by name, typed by BTF. Filled in by the loader."""

    def __init__(self, arena: Arena, variables: dict[str, tuple[int, int, int]], btf: BTF) -> None:
        # variables: name -> (offset in the arena, size, BTF type id)
        self._arena = arena
        self._vars = variables
        self._btf = btf

    def address(self, name: str) -> int:
        off, _size, _tid = self._lookup(name)
        return self._arena.user_vm_start + off

    def _lookup(self, name: str) -> tuple[int, int, int]:
        try:
            return self._vars[name]
        except KeyError:
            raise KeyError(f"no arena global named {name!r}; have {sorted(self._vars)}") from None

    def __getitem__(self, name: str) -> Any:
        from ..view.values import decode_value
        off, size, tid = self._lookup(name)
        return decode_value(self._btf, tid, self._arena.read(self._arena.user_vm_start + off, size))

    def __setitem__(self, name: str, value: Any) -> None:
        from ..view.values import encode_value
        off, size, tid = self._lookup(name)
        self._arena.write(self._arena.user_vm_start + off, encode_value(self._btf, tid, value, size))

    def __contains__(self, name: object) -> bool:
        return name in self._vars

    def __iter__(self):
        return iter(self._vars)

    def keys(self):
        return self._vars.keys()


def _backend_class(backend: str) -> type[Arena]:
    if backend == "kernel":
        from ..kernel.arena import KernelArena
        return KernelArena
    if backend == "vm":
        from ..vm.arena import VMArena
        return VMArena
    if backend == "auto":
        from ..kernel.features import arenas_available
        if arenas_available():
            from ..kernel.arena import KernelArena
            return KernelArena
        from ..vm.arena import VMArena
        return VMArena
    raise ValueError(f"unknown backend {backend!r}: use 'kernel', 'vm' or 'auto'")
