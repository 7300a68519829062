"""The raw C library: syscall(2) and the few memory calls Python's stdlib cannot make.

Every function returns the raw result; callers read `ctypes.get_errno()` (use_errno=True) on failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["libc", "SYS_BPF", "SYS_PROCESS_VM_READV", "SYS_PROCESS_VM_WRITEV", "IOVec"]

# syscall numbers per architecture (asm/unistd.h): bpf, process_vm_readv, process_vm_writev
_SYSCALLS = {
    "x86_64": (321, 310, 311),
    "aarch64": (280, 270, 271),
    "arm64": (280, 270, 271),
    "riscv64": (280, 270, 271),
    "s390x": (351, 340, 341),
    "ppc64le": (361, 351, 352),
}

_machine = platform.machine()
try:
    SYS_BPF, SYS_PROCESS_VM_READV, SYS_PROCESS_VM_WRITEV = _SYSCALLS[_machine]
except KeyError:  # pragma: no cover - only on unsupported machines
    SYS_BPF = SYS_PROCESS_VM_READV = SYS_PROCESS_VM_WRITEV = -1

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

libc.syscall.restype = ctypes.c_long

libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.munmap.restype = ctypes.c_int
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.restype = ctypes.c_int
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
libc.madvise.restype = ctypes.c_int
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.fallocate.restype = ctypes.c_int
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.close.restype = ctypes.c_int
libc.close.argtypes = [ctypes.c_int]


class IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]
