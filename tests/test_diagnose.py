"""Why kernel arenas are unavailable: each cause, with bpf(2) faked at its one choke point.

`bpfarena._sys.bpf.bpf` is the only function that makes the bpf(2) system call; the fake below
answers map creation and program loads as a kernel in each situation would, and hands out
memfds as map fds, so the real mmap and close calls work on them. The same diagnosis must then
come out of `diagnose()`, `features()`, `Arena(...)` and `load(backend="auto")`.
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Callable

import pytest

import bpfarena
from bpfarena import _sys
from bpfarena._sys.attr import Cmd
from bpfarena.errors import ArenasUnavailableError, SyscallError
from bpfarena.kernel import diagnose as dg
from bpfarena.kernel import features as feat
from bpfarena.kernel import kfuncs

ARENA, BLOOM = 33, 30
# the module (the package re-exports its function `bpf` under the same name)
sysbpf = importlib.import_module("bpfarena._sys.bpf")


class FakeKernel:
    """Answers MAP_CREATE and PROG_LOAD; every other command is a bug in the code under test."""

    def __init__(self, refuse: Callable[[int], int] = lambda map_type: 0, prog_errno: int = 0):
        self.refuse = refuse
        self.prog_errno = prog_errno
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, cmd: int, attr, size: int | None = None) -> int:
        if cmd == Cmd.MAP_CREATE:
            self.calls.append((cmd, attr.map_type))
            err = self.refuse(attr.map_type)
            if err:
                raise SyscallError("bpf(MAP_CREATE)", err)
            fd = os.memfd_create("fake-map")
            os.ftruncate(fd, attr.max_entries * 4096)
            return fd
        if cmd == Cmd.PROG_LOAD:
            self.calls.append((cmd, attr.prog_type))
            if self.prog_errno:
                raise SyscallError("bpf(PROG_LOAD)", self.prog_errno)
            return os.memfd_create("fake-prog")
        raise AssertionError(f"unexpected bpf command {cmd}")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Install a FakeKernel; the probes and every cache start afresh and are restored after."""
    def install(kernel: FakeKernel, *, btf: bool = True, jit: str = "1",
                release: str = "6.18.44") -> FakeKernel:
        monkeypatch.setattr(sysbpf, "bpf", kernel)
        monkeypatch.setattr(dg, "_result", [])
        monkeypatch.setattr(feat, "_cache", {})
        monkeypatch.setattr(feat, "_reasons", {})
        btf_file = tmp_path / "vmlinux"
        if btf:
            btf_file.write_bytes(b"\x9f\xeb\x01\x00")
        monkeypatch.setattr(kfuncs, "VMLINUX_BTF", str(btf_file))
        jit_file = tmp_path / "bpf_jit_enable"
        jit_file.write_text(jit + "\n")
        monkeypatch.setattr(dg, "JIT_SYSCTL", str(jit_file))
        monkeypatch.setattr(dg, "_release", lambda: release)
        return kernel

    yield install
    dg._result.clear()


def _only(map_type: int, err: int) -> Callable[[int], int]:
    return lambda t: err if t == map_type else 0


def test_eperm_with_cap_bpf_held_is_a_policy(fake):
    k = fake(FakeKernel(_only(ARENA, errno.EPERM)))
    d = dg.diagnose()
    assert d.cause is dg.Cause.POLICY and d.errno == errno.EPERM
    assert "holds CAP_BPF" in str(d) and "policy" in str(d)
    assert (Cmd.MAP_CREATE, BLOOM) in k.calls  # told apart by a second CAP_BPF-only map


def test_eperm_without_cap_bpf(fake):
    fake(FakeKernel(lambda t: errno.EPERM))
    d = dg.diagnose()
    assert d.cause is dg.Cause.NO_CAP_BPF
    assert "lacks CAP_BPF" in str(d)


def test_einval_for_an_unknown_map_type(fake):
    fake(FakeKernel(_only(ARENA, errno.EINVAL)), release="6.1.0-28-amd64")
    d = dg.diagnose()
    assert d.cause is dg.Cause.NO_ARENA_MAP
    assert "Linux 6.1.0-28-amd64 predates BPF_MAP_TYPE_ARENA" in str(d)


def test_einval_on_a_new_kernel_means_built_without_arenas(fake):
    fake(FakeKernel(_only(ARENA, errno.EINVAL)), release="6.12.0")
    d = dg.diagnose()
    assert d.cause is dg.Cause.NO_ARENA_MAP and "built without arenas" in str(d)


def test_no_btf(fake):
    fake(FakeKernel(), btf=False)
    d = dg.diagnose()
    assert d.cause is dg.Cause.NO_BTF
    assert "no BTF" in str(d) and "does not exist" in str(d)
    assert d.map_works  # the map itself was created and mapped


def test_no_cap_perfmon(fake):
    fake(FakeKernel(prog_errno=errno.EPERM))
    assert dg.diagnose().cause is dg.Cause.NO_CAP_PERFMON


def test_jit_off(fake):
    fake(FakeKernel(prog_errno=errno.EOPNOTSUPP), jit="0")
    d = dg.diagnose()
    assert d.cause is dg.Cause.JIT_OFF and "bpf_jit_enable = 0" in str(d)


def test_jit_without_arena_support(fake):
    fake(FakeKernel(_only(ARENA, errno.EOPNOTSUPP)), jit="1")
    assert dg.diagnose().cause is dg.Cause.JIT_UNSUPPORTED


def test_no_bpf_syscall(fake):
    fake(FakeKernel(lambda t: errno.ENOSYS))
    assert dg.diagnose().cause is dg.Cause.NO_BPF_SYSCALL


def test_everything_works(fake):
    k = fake(FakeKernel())
    assert dg.diagnose() is None
    assert feat.arenas_available() and feat.why_unavailable() is None
    assert [c for c, _ in k.calls] == [Cmd.MAP_CREATE, Cmd.PROG_LOAD]


def test_an_unexpected_errno_is_not_a_host_cause(fake):
    fake(FakeKernel(_only(ARENA, errno.EFAULT)))
    d = dg.diagnose()
    assert d.cause is dg.Cause.OTHER and d.cause not in dg.HOST_CAUSES
    assert "EFAULT" in str(d)


def test_a_probe_that_raises_is_reported_not_raised(fake, monkeypatch):
    fake(FakeKernel())

    def boom() -> None:
        raise OSError("probe exploded")
    monkeypatch.setattr(dg, "_diagnose", boom)
    d = dg.diagnose()
    assert d.cause is dg.Cause.OTHER and "probe exploded" in str(d)
    assert feat.arenas_available() is False and "probe exploded" in feat.why_unavailable()


def test_the_diagnosis_is_cached(fake):
    k = fake(FakeKernel(_only(ARENA, errno.EPERM)))
    first = dg.diagnose()
    n = len(k.calls)
    assert dg.diagnose() is first and len(k.calls) == n
    assert dg.refresh() == first and len(k.calls) == 2 * n


@pytest.mark.parametrize("refuse, prog_errno, btf, cause", [
    (_only(ARENA, errno.EPERM), 0, True, dg.Cause.POLICY),
    (lambda t: errno.EPERM, 0, True, dg.Cause.NO_CAP_BPF),
    (_only(ARENA, errno.EINVAL), 0, True, dg.Cause.NO_ARENA_MAP),
    (lambda t: 0, 0, False, dg.Cause.NO_BTF),
    (lambda t: 0, errno.EPERM, True, dg.Cause.NO_CAP_PERFMON),
])
def test_one_wording_everywhere(fake, monkeypatch, capsys, bpf_obj, refuse, prog_errno, btf,
                                cause):
    """features(), Arena(...), load(backend="auto") and the skip reason all say the diagnosis."""
    path = bpf_obj("load_arena.bpf.c")  # compiled before the fake goes in
    fake(FakeKernel(refuse, prog_errno), btf=btf)
    d = dg.diagnose()
    assert d.cause is cause
    text = str(d)
    # features: arena_map says it (when the map itself fails), and every "no" has a reason
    f = feat.features()
    for name, value in f.items():
        if value is False:
            assert feat.why(name), name
    if not d.map_works:
        assert f["arena_map"] is False and feat.why("arena_map") == d.detail
    assert feat.why_unavailable() == text
    # Arena(backend="kernel"): the same words, as a typed error
    if not d.map_works:
        with pytest.raises(ArenasUnavailableError) as ei:
            bpfarena.Arena(pages=1, backend="kernel")
        assert str(ei.value) == text and ei.value.cause == cause.value
    # loading an object with an arena on the kernel says it before anything else can fail
    with pytest.raises(ArenasUnavailableError) as ei:
        bpfarena.load(path, backend="kernel")
    assert str(ei.value) == text
    # backend="auto" takes the VM and says why, in the same words
    monkeypatch.delenv("BPFARENA_QUIET", raising=False)
    with bpfarena.load(path, backend="auto") as obj:
        assert obj.backend == "vm"
    assert text in capsys.readouterr().err
    # the arena factory takes the VM too
    with bpfarena.Arena(pages=1, backend="auto") as a:
        assert a.backend == "vm"


def test_cli_features_gives_a_reason_for_every_no():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bpfarena", "features"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        name, value = line.split()[:2]
        if value == "no":
            assert "(" in line and line.rstrip().endswith(")"), line


def test_the_fake_really_is_the_choke_point(fake):
    """Nothing in the probe reaches bpf(2) around `_sys.bpf.bpf`: with it refusing, all fail."""
    k = fake(FakeKernel(lambda t: errno.EPERM))
    with pytest.raises(SyscallError):
        _sys.map_create(2, 4, 4, 1)
    assert k.calls == [(Cmd.MAP_CREATE, 2)]
