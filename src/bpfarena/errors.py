"""The one exception tree of bpfarena.

Every failure a user can cause (bad input, a refusing kernel, a faulting program) surfaces as one of
these, with its context as attributes as well as in the message.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "BPFError",
    "ObjectError",
    "BTFError",
    "VerifierError",
    "NotSupportedError",
    "ArenasUnavailableError",
    "ArenaError",
    "MapError",
    "SyscallError",
    "AssemblerError",
    "CompileError",
    "VMError",
    "MemoryFault",
    "InvalidInstruction",
    "BudgetExceeded",
]


def _errname(err: int | None) -> str:
    if not err:
        return ""
    return _errno.errorcode.get(err, str(err))


class BPFError(Exception):
    """Root of every bpfarena error."""


class ObjectError(BPFError):
    """A BPF object file (ELF, relocations, maps, programs) cannot be read."""

    def __init__(
        self,
        message: str,
        *,
        section: str | None = None,
        symbol: str | None = None,
        insn_index: int | None = None,
        path: str | None = None,
    ) -> None:
        self.section = section
        self.symbol = symbol
        self.insn_index = insn_index
        self.path = path
        ctx = []
        if path:
            ctx.append(f"file {path}")
        if section is not None:
            ctx.append(f"section {section!r}")
        if symbol is not None:
            ctx.append(f"symbol {symbol!r}")
        if insn_index is not None:
            ctx.append(f"instruction {insn_index}")
        self.message = message
        super().__init__(message + (f" ({', '.join(ctx)})" if ctx else ""))


class BTFError(ObjectError):
    """BTF or .BTF.ext data is truncated, corrupt or inconsistent."""

    def __init__(self, message: str, *, offset: int | None = None, type_id: int | None = None,
                 section: str | None = None) -> None:
        self.offset = offset
        self.type_id = type_id
        extra = []
        if type_id is not None:
            extra.append(f"type id {type_id}")
        if offset is not None:
            extra.append(f"offset {offset}")
        super().__init__(message + (f" [{', '.join(extra)}]" if extra else ""), section=section)


class SyscallError(BPFError):
    """A bpf(2) or related system call failed; carries the kernel's errno."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        text = message
        if errno:
            text += f": {_errname(errno)} ({os.strerror(errno)})"
        super().__init__(text)


class VerifierError(SyscallError):
    """The kernel refused to load a program; `.log` has the verifier log, str() shows its tail."""

    TAIL_LINES = 20

    def __init__(self, program: str, errno: int | None, log: str, insn_index: int | None = None) -> None:
        self.program = program
        self.log = log
        self.insn_index = insn_index
        lines = [ln for ln in log.rstrip("\n").splitlines()]
        tail = "\n".join(lines[-self.TAIL_LINES:])
        msg = f"the kernel rejected program {program!r}"
        if insn_index is not None:
            msg += f" at instruction {insn_index}"
        super().__init__(msg, errno)
        self.args = (str(self.args[0]) + ("\nverifier log (tail):\n" + tail if tail else ""),)


class NotSupportedError(BPFError):
    """A feature is missing here: no privilege, an old kernel, or something the VM does not do."""

    def __init__(self, feature: str, reason: str = "", min_kernel: str | None = None,
                 errno: int | None = None, *, message: str | None = None) -> None:
        self.feature = feature
        self.reason = reason
        self.min_kernel = min_kernel
        self.errno = errno
        msg = message or f"{feature} is not supported"
        if reason and not message:
            msg += f": {reason}"
        if min_kernel:
            msg += f" (needs Linux >= {min_kernel})"
        super().__init__(msg)


class ArenasUnavailableError(NotSupportedError):
    """This process cannot use kernel arenas; `.cause` names why (the same words everywhere).

    The message is `bpfarena.kernel.diagnose`'s diagnosis: no CAP_BPF, arenas refused by a local
    policy, a kernel without arenas, no kernel BTF, no CAP_PERFMON, or the JIT.
    """

    def __init__(self, cause: str, message: str, errno: int | None = None) -> None:
        self.cause = cause
        super().__init__("kernel arenas", cause, errno=errno, message=message)


class ArenaError(BPFError):
    """An arena operation broke one of the kernel's rules; `.errno` mirrors the kernel's."""

    def __init__(self, message: str, errno: int | None = None, address: int | None = None) -> None:
        self.errno = errno
        self.address = address
        text = message
        if errno:
            text += f" [{_errname(errno)}]"
        super().__init__(text)


class MapError(SyscallError):
    """A map operation failed (missing key, full map, wrong sizes)."""


class AssemblerError(BPFError):
    """A program built with the assembler DSL is malformed (unknown label, bad operand)."""


class CompileError(BPFError):
    """clang-19 failed or is missing; the message says what to install or what clang said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        self.stderr = stderr
        super().__init__(message + (f"\n{stderr}" if stderr else ""))


class VMError(BPFError):
    """A program failed inside the user-space VM."""

    def __init__(self, message: str, *, insn_index: int | None = None, program: str | None = None) -> None:
        self.insn_index = insn_index
        self.program = program
        ctx = []
        if program is not None:
            ctx.append(f"program {program!r}")
        if insn_index is not None:
            ctx.append(f"instruction {insn_index}")
        super().__init__(message + (f" ({', '.join(ctx)})" if ctx else ""))


class InvalidInstruction(VMError):
    """An instruction is malformed or not allowed (decoding, load-time checks)."""


class MemoryFault(VMError):
    """A program touched memory outside every region the VM knows."""

    def __init__(self, message: str, *, insn_index: int | None = None, address: int | None = None,
                 size: int | None = None, region: str | None = None, program: str | None = None) -> None:
        self.address = address
        self.size = size
        self.region = region
        detail = message
        if address is not None:
            detail += f" at 0x{address:x}"
        if size is not None:
            detail += f" size {size}"
        if region:
            detail += f" in {region}"
        super().__init__(detail, insn_index=insn_index, program=program)


class BudgetExceeded(VMError):
    """The VM's instruction budget ran out (a runaway loop)."""
