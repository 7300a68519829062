"""`FdObject`: a loaded map or program held through one `_sys.Fd`.

The Fd closes once and on GC; this adds what a user sees: a closed object says which map or
program it was, with the error type of its kind.
"""

from __future__ import annotations

import errno

from .._sys import Fd
from ..errors import SyscallError


class FdObject:
    """Owns `fd`; `fileno()` raises `closed_error` naming the object once `close()` ran."""

    kind = "object"
    closed_error: type[SyscallError] = SyscallError
    name: str

    def __init__(self, fd: Fd) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        return self.fileno()

    def fileno(self) -> int:
        if self._fd.closed:
            raise self.closed_error(f"{self.kind} {self.name!r} is closed", errno.EBADF)
        return self._fd.fileno()

    def close(self) -> None:
        self._fd.close()
