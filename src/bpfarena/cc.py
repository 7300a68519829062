"""Compiling BPF C with clang-19 and bpfarena's headers.

`compile()` is what `bpfarena cc` and the test suite use. With `output_dir` the object is named by
a hash of the source, every header it includes and the flags, so a test suite compiles each
program once and a changed header rebuilds what depends on it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from .errors import CompileError

__all__ = ["CLANG", "compile", "find_clang", "include_dir", "multiarch_include_dir"]

CLANG = "clang-19"
_INCLUDE_RE = re.compile(rb'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def include_dir() -> Path:
    """The directory holding bpfarena.h, arena_alloc.h, arena_list.h and arena_htab.h."""
    return Path(__file__).resolve().parent / "include"


def find_clang() -> str:
    """The clang-19 executable ($BPFARENA_CLANG overrides), or CompileError saying what to install."""
    override = os.environ.get("BPFARENA_CLANG")
    for name in ([override] if override else []) + [CLANG]:
        path = shutil.which(name)
        if path:
            return path
    raise CompileError(
        f"{override or CLANG} was not found on PATH: bpfarena compiles BPF C with clang 19. "
        "Install it with `apt-get install clang-19` (Debian/Ubuntu), or point BPFARENA_CLANG "
        "at a clang >= 19 binary.")


# Debian/Ubuntu machine names -> multiarch tuples, for when gcc is not there to ask
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
              "riscv64": "riscv64-linux-gnu", "s390x": "s390x-linux-gnu",
              "ppc64le": "powerpc64le-linux-gnu", "armv7l": "arm-linux-gnueabihf",
              "i686": "i386-linux-gnu", "loongarch64": "loongarch64-linux-gnu"}


@lru_cache(maxsize=1)
def multiarch_include_dir() -> Path | None:
    """/usr/include/<multiarch> if it exists (None otherwise).

    `-target bpf` has no multiarch notion, but Debian keeps <asm/types.h> (needed by
    <linux/bpf.h> and <linux/types.h>) there; libbpf-based builds add it the same way.
    """
    tuples = []
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc:
        try:
            out = subprocess.run([gcc, "-print-multiarch"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            tuples.append(out)
    if platform.machine() in _MULTIARCH:
        tuples.append(_MULTIARCH[platform.machine()])
    for t in tuples:
        d = Path("/usr/include") / t
        if (d / "asm").is_dir():
            return d
    return None


def _flags(cpu: str, include_dirs: Iterable[str | os.PathLike[str]],
           extra_flags: Sequence[str]) -> list[str]:
    flags = ["-O2", "-g", "-target", "bpf", f"-mcpu={cpu}", f"-I{include_dir()}"]
    flags += [f"-I{os.fspath(d)}" for d in include_dirs]
    multiarch = multiarch_include_dir()
    if multiarch is not None:
        # searched after the system directories, so it never shadows anything they hold
        flags += ["-idirafter", str(multiarch)]
    flags += list(extra_flags)
    return flags


def _headers(src: Path, search: list[Path], seen: dict[Path, bytes]) -> None:
    """Collect every header reachable from `src` through #include lines we can resolve.

    A conservative over-approximation is fine (it only feeds the cache key); system headers that
    cannot be found are simply skipped.
    """
    try:
        text = src.read_bytes()
    except OSError:
        return
    for m in _INCLUDE_RE.finditer(text):
        name = m.group(1).decode(errors="replace")
        for d in [src.parent, *search]:
            cand = (d / name).resolve()
            if cand.is_file():
                if cand not in seen:
                    seen[cand] = cand.read_bytes()
                    _headers(cand, search, seen)
                break


def _cache_key(src: Path, flags: list[str], search: list[Path], clang: str) -> str:
    h = hashlib.sha256()
    h.update(b"bpfarena-cc-1\0")
    h.update(clang.encode() + b"\0")
    h.update("\0".join(flags).encode() + b"\0")
    h.update(src.read_bytes())
    seen: dict[Path, bytes] = {}
    _headers(src, search, seen)
    for path in sorted(seen):
        h.update(str(path).encode() + b"\0")
        h.update(seen[path])
    return h.hexdigest()[:16]


def _stem(src: Path) -> str:
    name = src.name
    for suffix in (".bpf.c", ".c"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return src.stem


def compile(source: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
            output_dir: str | os.PathLike[str] | None = None, extra_flags: Sequence[str] = (),
            cpu: str = "v3", include_dirs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Compile one BPF C file to an object with clang-19; returns the object's path.

    - `output`: where to write (default: beside the source, `x.bpf.c` -> `x.bpf.o`).
    - `output_dir`: write `<stem>-<hash>.bpf.o` there and reuse it when source, included headers
      and flags are unchanged (ignored when `output` is given).
    - Failures raise CompileError carrying clang's stderr.
    """
    src = Path(source)
    if not src.is_file():
        raise CompileError(f"BPF source {src} does not exist")
    include_dirs = list(include_dirs)
    flags = _flags(cpu, include_dirs, extra_flags)
    clang = find_clang()

    cached = False
    if output is not None:
        out = Path(output)
    elif output_dir is not None:
        search = [include_dir(), *(Path(d) for d in include_dirs)]
        key = _cache_key(src, flags, search, clang)
        out = Path(output_dir) / f"{_stem(src)}-{key}.bpf.o"
        cached = True
        if out.is_file() and out.stat().st_size > 0:
            return out
    else:
        out = src.with_name(_stem(src) + ".bpf.o")

    out.parent.mkdir(parents=True, exist_ok=True)
    # write to a temporary name and rename: concurrent test runs never see half an object
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    cmd = [clang, *flags, "-c", str(src), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CompileError(f"could not run {clang}: {e}") from e
    if proc.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise CompileError(f"clang failed to compile {src} (exit {proc.returncode}): "
                           f"{' '.join(cmd)}", proc.stderr)
    os.replace(tmp, out)
    if not cached and proc.stderr.strip():
        # warnings are worth seeing when a user compiles by hand
        print(proc.stderr, end="", file=sys.stderr)
    return out
