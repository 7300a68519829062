"""Why kernel arenas cannot be used here: one diagnosis, worded once.

Every place that has to say "no kernel arenas" (errors from `Arena(...)`, `features()`, test skips,
`backend="auto"`, the demo) asks `diagnose()`, so one cause always reads the same. Causes are told
apart by asking the kernel, step by step, never by a version number:

1. create a one-page arena. EPERM is then told apart by creating a bloom filter, another map that
   needs CAP_BPF: if that works, the process holds CAP_BPF and something else (a local policy: an
   LSM, a hardening patch) forbids arenas. EINVAL means the kernel does not know map type 33.
2. mmap the arena (the first mmap fixes its address);
3. the kernel's BTF, which every arena kfunc is resolved against;
4. load a program that references the arena: EPERM there means no CAP_PERFMON, EOPNOTSUPP a JIT
   that is off or cannot do arenas.

All of it goes through `_sys` (the one bpf(2) choke point), so tests fake each cause there.
"""

from __future__ import annotations

import enum
import errno
import os
import threading
from dataclasses import dataclass

from .. import _sys
from .._sys import mem
from ..arena import layout
from ..errors import ArenasUnavailableError, BPFError, SyscallError, _errname
from .bugs import release_version

__all__ = ["Cause", "Diagnosis", "diagnose", "refresh", "HOST_CAUSES"]

BPF_MAP_TYPE_BLOOM_FILTER = 30
JIT_SYSCTL = "/proc/sys/net/core/bpf_jit_enable"
BTF_MAGIC = b"\x9f\xeb"  # 0xeb9f, little-endian


class Cause(enum.Enum):
    """What stands between this process and kernel arenas."""

    NO_BPF_SYSCALL = "no bpf(2)"
    NO_CAP_BPF = "no CAP_BPF"
    POLICY = "refused by policy"
    NO_ARENA_MAP = "no arena map type"
    NO_BTF = "no kernel BTF"
    MMAP_FAILED = "cannot map"
    NO_CAP_PERFMON = "no CAP_PERFMON"
    JIT_OFF = "JIT off"
    JIT_UNSUPPORTED = "JIT without arenas"
    OTHER = "unexpected error"


# the causes that mean "this host cannot run kernel arenas" (a test may skip for these only);
# OTHER is a probe meeting something it does not understand, which is a bug to look at
HOST_CAUSES = frozenset(Cause) - {Cause.OTHER}


@dataclass(frozen=True)
class Diagnosis:
    """A cause, the sentence that explains it, and the errno the kernel gave (if any)."""

    cause: Cause
    detail: str
    errno: int | None = None

    PREFIX = "kernel arenas are unavailable"

    def __str__(self) -> str:
        return f"{self.PREFIX}: {self.detail}"

    def error(self) -> ArenasUnavailableError:
        """The exception that says this diagnosis."""
        return ArenasUnavailableError(self.cause.value, str(self), self.errno)

    @property
    def map_works(self) -> bool:
        """True if an arena map could be created and mapped (the failure came later)."""
        return self.cause in (Cause.NO_BTF, Cause.NO_CAP_PERFMON, Cause.JIT_OFF,
                              Cause.JIT_UNSUPPORTED)


def _release() -> str:
    return os.uname().release


def jit_setting() -> str | None:
    """net.core.bpf_jit_enable as text ("0" off, "1" on, "2" on with debug), None if unreadable."""
    try:
        with open(JIT_SYSCTL) as f:
            return f.read().strip()
    except OSError:
        return None


def _vmlinux_btf_problem() -> str | None:
    from . import kfuncs

    path = kfuncs.VMLINUX_BTF
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if head[:2] != BTF_MAGIC:
        return f"{path} is not BTF"
    return None


def _create_failed(err: int) -> Diagnosis:
    if err == errno.ENOSYS:
        return Diagnosis(Cause.NO_BPF_SYSCALL, "this kernel has no bpf(2) system call "
                         "(built without CONFIG_BPF_SYSCALL)", err)
    if err == errno.EPERM:
        return _eperm_on_create()
    if err == errno.EINVAL:
        rel = _release()
        v = release_version(rel)
        if v and v[:2] < (6, 9):
            why = f"Linux {rel} predates BPF_MAP_TYPE_ARENA, which came in Linux 6.9"
        else:
            why = (f"this kernel ({rel}) does not know BPF_MAP_TYPE_ARENA: it was built without "
                   "arenas (they need a 64-bit MMU kernel, Linux 6.9 or later)")
        return Diagnosis(Cause.NO_ARENA_MAP, why, err)
    if err in (errno.EOPNOTSUPP, _sys.ENOTSUPP):
        return _jit_refused(err)
    return Diagnosis(Cause.OTHER, f"creating a one-page arena failed with {_errname(err)} "
                     f"({os.strerror(err) if err else 'no errno'})", err)


def _eperm_on_create() -> Diagnosis:
    """EPERM for an arena: no CAP_BPF, or CAP_BPF held and arenas forbidden by something else."""
    try:
        _sys.map_create(BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 1).close()
        bloom: int | None = 0
    except SyscallError as e:
        bloom = e.errno
    if bloom == 0:
        return Diagnosis(Cause.POLICY, "the kernel refuses BPF_MAP_TYPE_ARENA with EPERM although "
                         "this process holds CAP_BPF (a bloom filter map, which needs CAP_BPF too, "
                         "is created): a local security policy forbids arenas", errno.EPERM)
    if bloom == errno.EPERM:
        return Diagnosis(Cause.NO_CAP_BPF, "this process lacks CAP_BPF: the kernel refuses every "
                         "map that needs it (EPERM); run as root or grant CAP_BPF and "
                         "CAP_PERFMON", errno.EPERM)
    return Diagnosis(Cause.OTHER, "the kernel refuses BPF_MAP_TYPE_ARENA with EPERM, and the "
                     f"CAP_BPF check (a bloom filter map) failed with {_errname(bloom)}",
                     errno.EPERM)


def _jit_refused(err: int) -> Diagnosis:
    if jit_setting() == "0":
        return Diagnosis(Cause.JIT_OFF, "the BPF JIT is off (net.core.bpf_jit_enable = 0), and "
                         "arena programs run only JIT-compiled", err)
    return Diagnosis(Cause.JIT_UNSUPPORTED, f"this kernel's BPF JIT for {os.uname().machine} "
                     "does not support arenas", err)


def _program_refused(e: BPFError) -> Diagnosis:
    err = getattr(e, "errno", None)
    if err == errno.EPERM:
        return Diagnosis(Cause.NO_CAP_PERFMON, "programs that use an arena need CAP_BPF and "
                         "CAP_PERFMON, and the kernel refused one with EPERM", err)
    if err in (errno.EOPNOTSUPP, _sys.ENOTSUPP):
        return _jit_refused(err)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return Diagnosis(Cause.OTHER, f"a program that references an arena was refused: {first}", err)


def _load_probe_program(fd: int) -> None:
    """A sleepable syscall program that references the arena: the kind bpfarena itself loads."""
    from ..isa.asm import R0, R1, Assembler
    from .progs import load_syscall_prog

    a = Assembler()
    a.ld_map_fd(R1, fd)  # the reference that ties the program to the arena
    a.mov64(R0, 0)
    a.exit_()
    load_syscall_prog(a, "arena_probe").close()


def _diagnose() -> Diagnosis | None:
    try:
        fd = _sys.map_create(layout.BPF_MAP_TYPE_ARENA, 0, 0, 1, flags=layout.BPF_F_MMAPABLE)
    except SyscallError as e:
        return _create_failed(e.errno or 0)
    with fd:
        try:
            addr = mem.mmap(None, layout.PAGE_SIZE, mem.PROT_READ | mem.PROT_WRITE,
                            mem.MAP_SHARED, fd.fileno())
        except SyscallError as e:
            return Diagnosis(Cause.MMAP_FAILED, "an arena was created but mapping it failed with "
                             f"{_errname(e.errno)}", e.errno)
        try:
            btf = _vmlinux_btf_problem()
            if btf is not None:
                return Diagnosis(Cause.NO_BTF, f"the kernel has no BTF ({btf}), and arena kfuncs "
                                 "are resolved against it (CONFIG_DEBUG_INFO_BTF=y)")
            _load_probe_program(fd.fileno())
        except BPFError as e:
            return _program_refused(e)
        finally:
            mem.munmap(addr, layout.PAGE_SIZE)
    return None


_lock = threading.Lock()
_result: list[Diagnosis | None] = []


def diagnose() -> Diagnosis | None:
    """Why kernel arenas cannot be used by this process, or None if they can (cached; never raises)."""
    with _lock:
        if not _result:
            try:
                _result.append(_diagnose())
            except Exception as e:  # a probe that breaks is reported, not raised
                _result.append(Diagnosis(Cause.OTHER, f"probing for arenas failed: {e!r}"))
        return _result[0]


def refresh() -> Diagnosis | None:
    """Forget the cached diagnosis and probe again (after privileges or the kernel changed)."""
    with _lock:
        _result.clear()
    return diagnose()
