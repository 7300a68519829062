"""`Fd`: one owner for one file descriptor, closed exactly once."""

from __future__ import annotations

import os

from ..errors import SyscallError


class Fd:
    """Owns a file descriptor: `close()` is idempotent, `with` closes, GC closes as a last resort."""

    __slots__ = ("_fd", "__weakref__")

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise SyscallError(f"invalid file descriptor {fd}")
        self._fd = fd

    def fileno(self) -> int:
        if self._fd < 0:
            raise SyscallError("file descriptor is closed", 9)  # EBADF
        return self._fd

    def __int__(self) -> int:
        return self.fileno()

    def __index__(self) -> int:
        return self.fileno()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def detach(self) -> int:
        """Give up ownership; the caller now closes the returned number."""
        fd, self._fd = self.fileno(), -1
        return fd

    def dup(self) -> Fd:
        return Fd(os.dup(self.fileno()))

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Fd {self._fd if self._fd >= 0 else 'closed'}>"
