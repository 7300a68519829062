"""`KernelArena`: a real BPF_MAP_TYPE_ARENA, mapped into this process.

Pages are allocated, freed and reserved by the arena kfuncs themselves, called from tiny built-in
syscall programs (progs.py) run with BPF_PROG_TEST_RUN, so every result is the kernel's own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import warnings
import weakref

from .. import _sys
from .._sys import mem
from ..arena import layout
from ..arena.base import Arena
from ..arena.layout import PAGE_SIZE
from ..errors import ArenaError, ArenasUnavailableError, NotSupportedError, SyscallError
from .diagnose import Cause, diagnose

BPFFS = "/sys/fs/bpf"

# map id -> [address, users]: one process can map an arena at one address only, so every
# KernelArena of the same map in this process shares one mapping
_MAPPINGS: dict[int, list[int]] = {}
_MAPPINGS_LOCK = threading.Lock()

_CREATE_REASONS = {
    errno.EINVAL: "the kernel refused the arena's parameters",
    errno.E2BIG: "an arena holds at most 2^20 pages (4 GiB)",
    errno.ERANGE: "the arena's address range would cross a 4 GiB boundary",
    errno.ENOMEM: "the kernel could not reserve the arena's address space",
}


def _unavailable(err: int) -> ArenasUnavailableError | None:
    """The diagnosis, as an error, when a create-time errno means 'no arenas here', else None."""
    if err not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, _sys.ENOTSUPP):
        return None
    d = diagnose()
    if d is None or (err == errno.EINVAL and d.cause is not Cause.NO_ARENA_MAP):
        return None  # arenas work here: this arena's parameters were the problem
    return d.error()


NUMA_NO_NODE = -1
NODES_ONLINE = "/sys/devices/system/node/online"


def online_nodes() -> frozenset[int]:
    """The NUMA nodes online now ({0} on a kernel without NUMA support)."""
    try:
        with open(NODES_ONLINE) as f:
            text = f.read().strip()
    except OSError:
        return frozenset({0})
    nodes: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        try:
            nodes.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return frozenset({0})
    return frozenset(nodes)


def _kernel_name(name: str | None) -> str | None:
    """The kernel takes object names of up to 15 of [A-Za-z0-9_.]; keep the rest for Python."""
    if not name:
        return None
    return "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)[:15]


def ensure_bpffs(path: str = BPFFS) -> str:
    """Make sure a bpffs is mounted at `path` (mounting one as root if not); returns `path`."""
    if _is_bpffs(path):
        return path
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(path, exist_ok=True)
    if libc.mount(b"bpffs", os.fsencode(path), b"bpf", ctypes.c_ulong(0), None) != 0:
        err = ctypes.get_errno()
        raise NotSupportedError("bpffs", f"no bpf filesystem at {path} and mounting one failed "
                                f"({os.strerror(err)})", errno=err)
    return path


def _is_bpffs(path: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(ln.split()[1:3] == [path, "bpf"] for ln in f if len(ln.split()) > 2)
    except OSError:
        return False


class KernelArena(Arena):
    """A kernel BPF arena: `BPF_MAP_TYPE_ARENA` created with BPF_F_MMAPABLE and mmap'ed here."""

    backend = "kernel"

    def __init__(self, pages: int, backend: str = "kernel", user_vm_start: int | None = None,
                 flags: int = 0, name: str | None = None) -> None:
        self._base = 0
        self._fd: _sys.Fd | None = None
        full = flags | layout.BPF_F_MMAPABLE
        map_extra = user_vm_start or 0
        layout.check_create(pages, map_extra, full)
        try:
            fd = _sys.map_create(layout.BPF_MAP_TYPE_ARENA, 0, 0, pages, flags=full,
                                 name=_kernel_name(name), map_extra=map_extra)
        except SyscallError as e:
            err = e.errno or 0
            unavailable = _unavailable(err)
            if unavailable is not None:
                raise unavailable from None
            why = _CREATE_REASONS.get(err, "the kernel refused to create the arena")
            raise ArenaError(f"cannot create a {pages}-page arena"
                             f"{f' at 0x{map_extra:x}' if map_extra else ''}: {why}",
                             err, map_extra or None) from None
        self._setup(fd, pages, full, map_extra, name)

    # --- construction helpers -------------------------------------------------------------------
    def _setup(self, fd: _sys.Fd, pages: int, flags: int, map_extra: int,
               name: str | None, known_start: int | None = None) -> None:
        self._fd = fd
        self._max_pages = pages
        self._flags = flags
        self._name = name
        # (memoryview, its exporter) handed out by _buffer(), both as weak references
        self._views: list[tuple[weakref.ref, weakref.ref]] = []
        self._progs = None
        self._lock = threading.Lock()
        self._segv = bool(flags & layout.BPF_F_SEGV_ON_FAULT)
        size = pages * PAGE_SIZE
        at = map_extra or known_start
        try:
            self._map_id = _sys.map_info(fd).id
        except SyscallError as e:
            fd.close()
            self._closed = True
            raise ArenaError("cannot read the arena map's info", e.errno) from None
        with _MAPPINGS_LOCK:
            shared = _MAPPINGS.get(self._map_id)
            if shared is not None:  # this process maps the arena already: the kernel allows
                shared[1] += 1      # only one address, so share that mapping
                base = shared[0]
            else:
                base = self._mmap(fd, at, size)
                _MAPPINGS[self._map_id] = [base, 1]
        self._base = base
        self._user_vm_start = base

    def _mmap(self, fd: _sys.Fd, at: int | None, size: int) -> int:
        try:
            if at:
                return mem.mmap(at, size, mem.PROT_READ | mem.PROT_WRITE,
                                mem.MAP_SHARED | mem.MAP_FIXED_NOREPLACE, fd.fileno())
            return mem.mmap(None, size, mem.PROT_READ | mem.PROT_WRITE, mem.MAP_SHARED,
                            fd.fileno())
        except SyscallError as e:
            fd.close()
            self._closed = True
            err = e.errno or 0
            where = f" at 0x{at:x}" if at else ""
            if err == errno.EEXIST:
                msg = (f"cannot map the arena{where}: that address range is already in use in "
                       "this process")
            elif err == errno.EBUSY:
                msg = (f"cannot map the arena{where}: the kernel cannot place a mapping there "
                       "(outside the user address space, or fixed elsewhere by another mapping)")
            elif err == errno.ENOMEM:
                msg = (f"cannot map the arena{where} ({size:#x} bytes): no room for it in this "
                       "process's address space there")
            else:
                msg = f"cannot map the arena{where} ({size:#x} bytes)"
            raise ArenaError(msg, err, at or None) from None

    @classmethod
    def from_fd(cls, fd: _sys.Fd | int, *, name: str | None = None) -> KernelArena:
        """Adopt an existing arena map fd (owned from now on): learn its shape and map it.

        If the arena's address is already fixed (map_extra, or an earlier mmap by anyone), the
        mapping goes exactly there.
        """
        if isinstance(fd, int):
            fd = _sys.Fd(fd)
        try:
            info = _sys.map_info(fd)
        except SyscallError as e:
            fd.close()
            raise ArenaError("cannot read the map's info", e.errno) from None
        if info.type != layout.BPF_MAP_TYPE_ARENA:
            fd.close()
            raise ArenaError(f"map {info.id} is not an arena (type {info.type})", errno.EINVAL)
        known = None
        if not info.map_extra:
            from .progs import probe_user_vm_start
            try:
                known = probe_user_vm_start(fd)
            except BaseException:
                fd.close()
                raise
        self = cls.__new__(cls)
        self._base = 0
        self._fd = None
        self._setup(fd, info.max_entries, info.map_flags, info.map_extra,
                    name or info.name.decode(errors="replace") or None, known)
        return self

    @classmethod
    def _open(cls, *, map_id: int | None = None, pinned: str | None = None) -> KernelArena:
        if (map_id is None) == (pinned is None):
            raise ArenaError("Arena.open needs exactly one of map_id= or pinned=", errno.EINVAL)
        try:
            fd = (_sys.map_get_fd_by_id(map_id) if map_id is not None
                  else _sys.obj_get(pinned))
        except SyscallError as e:
            what = f"map id {map_id}" if map_id is not None else f"pinned path {pinned}"
            if e.errno == errno.EPERM:
                need = ("CAP_SYS_ADMIN" if map_id is not None
                        else "CAP_BPF and access to the pinned file")
                raise NotSupportedError(f"opening the arena at {what}", f"permission denied: it "
                                        f"needs {need}", errno=e.errno) from None
            raise ArenaError(f"cannot open the arena at {what}", e.errno) from None
        return cls.from_fd(fd)

    # --- identity -------------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The arena map's file descriptor (owned by this object)."""
        self._check_open()
        assert self._fd is not None
        return self._fd.fileno()

    @property
    def map_id(self) -> int:
        """The kernel's id of the arena map (for `Arena.open(map_id=...)` elsewhere)."""
        self._check_open()
        return self._map_id

    def pin(self, path: str | os.PathLike) -> None:
        """Pin the arena in bpffs so another process can `Arena.open(pinned=path)` it."""
        path = os.fspath(path)
        if os.path.dirname(os.path.abspath(path)).startswith(BPFFS):
            ensure_bpffs()
        try:
            _sys.obj_pin(self.fd, path)
        except SyscallError as e:
            raise ArenaError(f"cannot pin the arena at {path} (it must be on a bpf filesystem "
                             "and not exist yet)", e.errno) from None

    # --- data -----------------------------------------------------------------------------------
    def _read(self, off: int, n: int) -> bytes:
        if not n:
            return b""
        if not self._segv:
            return mem.copy_out(self._base + off, n)
        data, err = mem.process_vm_readv(self._base + off, n)
        if err:
            raise self._fault("read", off + len(data), err)
        return data

    def _write(self, off: int, data: bytes) -> None:
        if not data:
            return
        if not self._segv:
            mem.copy_in(self._base + off, data)
            return
        # all or nothing, as one store would be: find a missing page before writing anything
        got, err = mem.process_vm_readv(self._base + off, len(data))
        if err:
            raise self._fault("write", off + len(got), err)
        done, err = mem.process_vm_writev(self._base + off, data)
        if err:
            raise self._fault("write", off + done, err)

    def _fault(self, what: str, off: int, err: int) -> ArenaError:
        addr = self._base + off
        return ArenaError(f"{what} at 0x{addr:x}: page {off // PAGE_SIZE} is not allocated and the "
                          "arena has BPF_F_SEGV_ON_FAULT", err, addr)

    def _buffer(self) -> memoryview:
        # the ctypes array exports the buffer: every view, slice or NumPy array derived from
        # the memoryview keeps it alive, so a live array weakref at close() means "still in use"
        arr = (ctypes.c_ubyte * self.size).from_address(self._base)
        mv = memoryview(arr).cast("B")
        self._views = [(v, x) for v, x in self._views if x() is not None]
        self._views.append((weakref.ref(mv), weakref.ref(arr)))
        return mv

    # --- pages (the kfuncs) ---------------------------------------------------------------------
    def _programs(self):
        with self._lock:
            if self._progs is None:
                from .progs import ArenaPrograms
                assert self._fd is not None
                self._progs = ArenaPrograms(self._fd)
            return self._progs

    def _alloc_pages(self, count: int, addr: int | None, node: int) -> int:
        if count <= 0 or count > 0xFFFFFFFF:
            return 0  # the kfunc returns NULL for 0; a count beyond u32 is beyond every arena
        if node != NUMA_NO_NODE and node not in online_nodes():
            # kernels with the node-id check return NULL here; older ones oops (kernel/bugs.py),
            # so the call never reaches them
            return 0
        return self._programs().alloc(addr or 0, count, node)

    def _free_pages(self, addr: int, count: int) -> None:
        if count <= 0 or not addr:
            return  # the kfunc ignores cnt 0 and NULL
        count = min(count, 0xFFFFFFFF)
        self._programs().free(addr, count)

    def _reserve_pages(self, addr: int, count: int) -> int:
        count = max(0, min(count, 0xFFFFFFFF))
        return self._programs().reserve(addr, count)

    def _resident_pages(self) -> int:
        """Pages allocated now, counted in the kernel's own mapping without side effects (see
        progs.count_prog): BPF allocations and user faults, from any handle or program; pages
        only reserved do not count."""
        return self._programs().resident_pages(self._max_pages, self._user_vm_start)

    # --- lifetime -------------------------------------------------------------------------------
    def _close(self) -> None:
        # memoryviews we handed out are released (using one afterwards raises ValueError, not a
        # crash); if their memory is still exported after that (NumPy arrays, slices), the
        # mapping must stay, since those hold raw pointers into it
        views = getattr(self, "_views", [])
        for r, _ in views:
            mv = r()
            if mv is not None:
                try:
                    mv.release()
                except (BufferError, ValueError):
                    pass
                del mv
        live = any(x() is not None for _, x in views)
        progs, self._progs = getattr(self, "_progs", None), None
        if progs is not None:
            progs.close()
        if self._base:
            with _MAPPINGS_LOCK:
                entry = _MAPPINGS.get(self._map_id)
                if entry is not None:
                    entry[1] -= 1
                    if live:  # raw pointers may outlive every handle: never unmap this one
                        entry[1] += 1 << 40
                    elif entry[1] <= 0:
                        del _MAPPINGS[self._map_id]
                        mem.munmap(self._base, self.size)
            if live:
                warnings.warn("arena closed while NumPy arrays or other buffers still use its "
                              "memory: the mapping is kept so they stay valid", ResourceWarning,
                              stacklevel=3)
            self._base = 0
        if self._fd is not None:
            self._fd.close()
