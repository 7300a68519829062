"""Loading programs with the verifier log captured, and running them with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import errno
import time
from typing import Any

from .. import _sys
from ..collection import Program, RunResult, default_packet
from ..errors import NotSupportedError, SyscallError, VerifierError
from .owned import FdObject

BPF_F_SLEEPABLE = 1 << 4
PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP = 1, 3, 4, 6
PROG_RAW_TRACEPOINT, PROG_CGROUP_SKB, PROG_LWT_IN, PROG_FLOW_DISSECTOR = 17, 8, 10, 22
PROG_RAW_TRACEPOINT_WRITABLE, PROG_TRACING, PROG_STRUCT_OPS, PROG_LSM, PROG_SYSCALL = 24, 26, 27, 29, 31
# test runs of these take a context only: no data, no kernel-side repeat, no kernel duration
CTX_ONLY = {PROG_SYSCALL, PROG_RAW_TRACEPOINT, PROG_RAW_TRACEPOINT_WRITABLE}
PACKET_TYPES = {PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP, PROG_CGROUP_SKB,
                PROG_LWT_IN, PROG_FLOW_DISSECTOR}
MAX_LOG = 1 << 28
# errnos for which a refused load is worth a second try with the verifier log on
_LOG_WORTHY = {errno.EACCES, errno.EINVAL, errno.E2BIG, errno.ENOSPC, errno.EPERM, errno.EFAULT,
               errno.ENOTSUP, errno.EBUSY, errno.ENOENT, errno.ERANGE, _sys.ENOTSUPP}
failing_insn = _sys.failing_insn


def load_program(name: str, prog_type: int, insns: bytes, license: str, *, log_level: int = 0,
                 log_size: int = 1 << 20, **kw: Any) -> _sys.ProgFd:
    """PROG_LOAD; on a refusal reload with a verifier log and raise VerifierError.

    Loading first without a log is cheaper and is how libbpf does it; the log only matters when
    something is wrong (or when the caller asks for it with log_level > 0). `kw` goes to
    `_sys.prog_load`. The returned ProgFd keeps the log in `.log`.
    """
    def load(level: int, size: int) -> _sys.ProgFd:
        return _sys.prog_load(prog_type, insns, license, name=name, log_level=level,
                              log_size=size, retry_with_log=False, **kw)

    try:
        return load(log_level, log_size)
    except VerifierError as e:
        first = e
    if first.errno not in _LOG_WORTHY:
        raise SyscallError(f"loading BPF program {name!r}", first.errno) from None
    level = log_level or 1
    size = max(log_size, 1 << 16)
    while True:
        try:
            # it may load with a log but not without one: then keep it (it is valid)
            return load(level, size)
        except VerifierError as e:
            if e.errno == errno.ENOSPC and size < MAX_LOG:
                size *= 4
                continue
            err = first.errno if e.errno == errno.ENOSPC else e.errno
            if err == errno.EPERM and not e.log.strip():
                raise NotSupportedError(
                    f"loading BPF program {name!r}",
                    "the kernel said EPERM without a verifier log: it needs CAP_BPF (and "
                    "CAP_PERFMON for arenas and tracing), or this kernel does not allow the "
                    f"program type {prog_type} here", errno=err) from None
            raise VerifierError(name, err, e.log, e.insn_index) from None


class KernelProgram(FdObject, Program):
    """A loaded program owning its Fd; `run` goes through BPF_PROG_TEST_RUN."""

    backend = "kernel"
    kind = "program"

    def __init__(self, fd: _sys.Fd, name: str, section: str, prog_type: int,
                 log: str = "") -> None:
        super().__init__(fd)
        self.name = name
        self.section = section
        self.prog_type = prog_type
        self.log = log

    def run(self, ctx: bytes = b"", repeat: int = 1, data: bytes = b"") -> RunResult:
        """Run the program `repeat` times; duration_ns is the mean per run.

        Syscall and raw_tp programs take no data and the kernel refuses repeat for them and
        reports no duration, so those are repeated from Python and timed around the syscall.
        Packet programs get a minimal 64-byte IPv4 frame when no `data` is given.
        """
        repeat = max(1, int(repeat))
        ctx, data = bytes(ctx), bytes(data)
        if self.prog_type in CTX_ONLY and data:
            raise NotSupportedError("data_in for this program type",
                                    f"program {self.name!r} takes a context only")
        fd = self.fileno()
        try:
            if self.prog_type in CTX_ONLY:
                t0 = time.perf_counter_ns()
                for _ in range(repeat):
                    ctx_after = bytearray(ctx)  # the kernel copies the context back into it
                    retval = _sys.prog_test_run_ctx_inout(fd, ctx_after)
                dur = (time.perf_counter_ns() - t0) // repeat
                return RunResult(retval, dur, bytes(ctx_after), b"")
            if self.prog_type in PACKET_TYPES and not data:
                data = default_packet()
            r = _sys.prog_test_run(fd, ctx_in=ctx, ctx_out_size=len(ctx), data_in=data,
                                   data_out_size=len(data) + 512 if data else 0, repeat=repeat)
            return RunResult(r.retval, r.duration_ns, r.ctx_out, r.data_out)
        except SyscallError as e:
            if e.errno in (errno.ENOTSUP, _sys.ENOTSUPP):
                raise NotSupportedError(f"BPF_PROG_TEST_RUN for program {self.name!r}",
                                        f"the kernel cannot test-run program type "
                                        f"{self.prog_type}", errno=e.errno) from None
            raise SyscallError(f"running program {self.name!r}", e.errno) from None

    def __repr__(self) -> str:
        return f"<KernelProgram {self.name!r} section={self.section!r} type={self.prog_type}>"
