"""Memory calls Python's `mmap` module cannot make: placed mappings, safe cross-checked copies.

- `mmap()` takes an address hint and MAP_FIXED / MAP_FIXED_NOREPLACE.
- `process_vm_readv/writev` on our own pid copy through the kernel: a missing page (for example in
  a BPF_F_SEGV_ON_FAULT arena) gives EFAULT instead of a SIGSEGV that would kill the interpreter.
- `memview()` makes a writable memoryview over a raw address range (zero-copy).
"""

from __future__ import annotations

import ctypes
import os

from ..errors import SyscallError
from .libc import SYS_PROCESS_VM_READV, SYS_PROCESS_VM_WRITEV, IOVec, libc

PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
MAP_FAILED = (1 << 64) - 1

MADV_DONTNEED = 4
MADV_REMOVE = 9

FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2

MFD_CLOEXEC = 1
MFD_ALLOW_SEALING = 2


def _fail(what: str) -> SyscallError:
    return SyscallError(what, ctypes.get_errno())


def mmap(addr: int | None, length: int, prot: int, flags: int, fd: int = -1,
         offset: int = 0) -> int:
    """mmap(2); returns the address of the mapping or raises SyscallError with errno.

    With MAP_FIXED_NOREPLACE an old kernel (< 4.17) may silently place the mapping elsewhere;
    that case is detected, undone, and reported as EEXIST.
    """
    ret = libc.mmap(addr or None, length, prot, flags, fd, offset)
    if ret is None or ret == MAP_FAILED:
        hint = f" at 0x{addr:x}" if addr else ""
        raise _fail(f"mmap({length:#x} bytes{hint})")
    if flags & MAP_FIXED_NOREPLACE and addr and ret != addr:
        libc.munmap(ret, length)
        raise SyscallError(f"mmap at 0x{addr:x} would replace an existing mapping", 17)  # EEXIST
    return ret


def munmap(addr: int, length: int) -> None:
    if libc.munmap(addr, length) != 0:
        raise _fail(f"munmap(0x{addr:x}, {length:#x})")


def madvise(addr: int, length: int, advice: int) -> None:
    if libc.madvise(addr, length, advice) != 0:
        raise _fail(f"madvise(0x{addr:x}, {length:#x}, {advice})")


def mincore(addr: int, length: int) -> bytes:
    """One byte per page of [addr, addr+length): bit 0 set where the page is resident."""
    pages = (length + 4095) // 4096
    vec = (ctypes.c_ubyte * max(pages, 1))()
    if libc.mincore(addr, length, vec) != 0:
        raise _fail(f"mincore(0x{addr:x}, {length:#x})")
    return bytes(vec)[:pages]


def memfd_create(name: str, flags: int = MFD_CLOEXEC) -> int:
    """A memfd; returns a raw fd number (wrap it in `Fd` to own it)."""
    try:
        return os.memfd_create(name, flags)
    except OSError as e:
        raise SyscallError(f"memfd_create({name!r})", e.errno) from None


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if libc.fallocate(fd, mode, offset, length) != 0:
        raise _fail(f"fallocate(fd {fd}, mode {mode}, {offset:#x}, {length:#x})")


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Drop the pages of [offset, offset+length) from a memfd/file: they read back as zero."""
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def _vm_rw(sysno: int, local: int, remote: int, n: int) -> tuple[int, int]:
    """process_vm_readv/writev on ourselves until all `n` bytes moved or one call stopped short.

    Returns (bytes moved, errno): EFAULT when the kernel moved nothing at `remote + done`.
    """
    done = 0
    while done < n:
        liov = IOVec(local + done, n - done)
        riov = IOVec(remote + done, n - done)
        ret = libc.syscall(ctypes.c_long(sysno), ctypes.c_int(os.getpid()), ctypes.byref(liov),
                           ctypes.c_ulong(1), ctypes.byref(riov), ctypes.c_ulong(1),
                           ctypes.c_ulong(0))
        if ret < 0:
            return done, ctypes.get_errno()
        if ret == 0:
            return done, 14  # EFAULT
        done += ret
    return done, 0


def process_vm_readv(addr: int, n: int) -> tuple[bytes, int]:
    """Copy n bytes from our own address `addr` through the kernel.

    Returns (data, err): data is what could be read (possibly short), err is 0 or the errno that
    stopped it (EFAULT at `addr + len(data)` when a page is missing).
    """
    buf = (ctypes.c_char * max(n, 1))()
    done, err = _vm_rw(SYS_PROCESS_VM_READV, ctypes.addressof(buf), addr, n)
    return buf.raw[:done], err


def process_vm_writev(addr: int, data: bytes) -> tuple[int, int]:
    """Copy data to our own address `addr` through the kernel; returns (bytes written, errno)."""
    buf = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
    return _vm_rw(SYS_PROCESS_VM_WRITEV, ctypes.addressof(buf), addr, len(data))


def memview(addr: int, n: int) -> memoryview:
    """A writable, zero-copy memoryview (format 'B') over [addr, addr+n).

    The caller keeps the memory mapped while the view lives; touching unmapped memory through it
    is a real SIGSEGV.
    """
    arr = (ctypes.c_ubyte * n).from_address(addr)
    return memoryview(arr).cast("B")


def copy_out(addr: int, n: int) -> bytes:
    """Plain memory read (ctypes.string_at): faults like a CPU load would."""
    return ctypes.string_at(addr, n)


def copy_in(addr: int, data: bytes) -> None:
    """Plain memory write (memmove): faults like a CPU store would."""
    ctypes.memmove(addr, data, len(data))
