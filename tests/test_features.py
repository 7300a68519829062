"""Feature probes: each answer is checked against what the kernel then actually does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import bpfarena
from bpfarena import _sys
from bpfarena.arena import BPF_F_NO_USER_CONV, BPF_F_SEGV_ON_FAULT
from bpfarena.errors import VerifierError
from bpfarena.kernel import features as feat
from bpfarena.kernel.kfuncs import ARENA_KFUNCS, find_kfunc

KEYS = {"kernel_release", "arena_map", "BPF_F_SEGV_ON_FAULT", "BPF_F_NO_USER_CONV",
        "kfunc_bpf_arena_alloc_pages", "kfunc_bpf_arena_free_pages",
        "kfunc_bpf_arena_reserve_pages", "addr_space_cast", "arena_globals_at_end", "jit_enabled"}


def test_every_feature_is_reported():
    f = bpfarena.features()
    assert set(f) == KEYS
    assert f["kernel_release"] == os.uname().release
    assert all(isinstance(v, bool) for k, v in f.items() if k != "kernel_release")


def test_results_are_cached(monkeypatch):
    calls = []
    monkeypatch.setitem(feat._PROBES, "counted", lambda: calls.append(1) or True)
    assert feat.probe("counted") is True
    assert feat.probe("counted") is True
    assert calls == [1]
    feat._cache.pop("counted", None)


def test_a_broken_probe_is_a_missing_feature(monkeypatch):
    def boom() -> bool:
        raise OSError("probe exploded")
    monkeypatch.setitem(feat._PROBES, "addr_space_cast", boom)
    monkeypatch.setattr(feat, "_cache", {})
    monkeypatch.setattr(feat, "_reasons", {})
    assert feat.probe("addr_space_cast") is False
    assert "probe exploded" in feat.why("addr_space_cast")


def test_arenas_available_here(kernel):
    assert feat.arenas_available() is True
    assert feat.why_unavailable() is None


def test_jit_enabled_matches_sysctl():
    with open("/proc/sys/net/core/bpf_jit_enable") as f:
        assert feat.features()["jit_enabled"] == (f.read().strip() != "0")


def test_flag_probes_match_arena_creation(kernel):
    f = feat.features()
    for name, flag in (("BPF_F_SEGV_ON_FAULT", BPF_F_SEGV_ON_FAULT),
                       ("BPF_F_NO_USER_CONV", BPF_F_NO_USER_CONV)):
        try:
            bpfarena.Arena(pages=1, backend="kernel", flags=flag).close()
            works = True
        except bpfarena.errors.BPFError:
            works = False
        assert f[name] is works


def test_kfunc_probes_match_the_btf_and_the_arena(kernel):
    f = feat.features()
    for name in ARENA_KFUNCS:
        assert f[f"kfunc_{name}"] is (find_kfunc(name) is not None)
    if f["kfunc_bpf_arena_alloc_pages"] and f["kfunc_bpf_arena_free_pages"]:
        with bpfarena.Arena(pages=2, backend="kernel") as a:
            a.free_pages(a.alloc_pages(1), 1)


def test_kfunc_ids_are_funcs_in_vmlinux(kernel):
    from bpfarena.kernel.kfuncs import vmlinux_btf

    btf = vmlinux_btf()
    for name in ARENA_KFUNCS:
        tid = find_kfunc(name)
        if tid is not None:
            assert btf.name_of(tid) == name
            assert int(btf.kind(tid)) == 12
    assert find_kfunc("bpf_arena_no_such_kfunc") is None


def test_globals_at_end_probe_matches_an_arena_program(kernel):
    """Load an arena program whose ld_imm64 offset is past 512 MiB: it loads iff the probe says so."""
    from bpfarena.isa.asm import R0, R1, R6, Assembler
    from bpfarena.kernel.progs import load_syscall_prog

    with bpfarena.Arena(pages=1 << 18, backend="kernel") as a:  # 1 GiB
        asm = Assembler()
        asm.mov64(R6, R1)
        asm.ld_map_value(R1, a.fd, (512 << 20) + 4096)
        asm.stx("dw", R6, R1, 0)
        asm.mov64(R0, 0)
        asm.exit_()
        try:
            with load_syscall_prog(asm, "far_off") as prog:
                ctx = bytearray(8)
                _sys.prog_test_run_ctx_inout(prog, ctx)
                assert int.from_bytes(ctx, "little") == a.user_vm_start + (512 << 20) + 4096
            loaded = True
        except VerifierError as e:
            assert "direct value offset" in e.log
            loaded = False
    assert feat.features()["arena_globals_at_end"] is loaded
    if not loaded:
        assert "512 MiB" in feat.why("arena_globals_at_end")


def test_addr_space_cast_probe_matches(kernel):
    from bpfarena.isa.asm import R0, R1, Assembler
    from bpfarena.kernel.progs import load_syscall_prog

    with bpfarena.Arena(pages=1, backend="kernel") as a:
        asm = Assembler()
        asm.ld_map_fd(R1, a.fd)
        asm.mov64(R0, 0)
        asm.cast_kern(R0, R0)
        asm.mov64(R0, 0)
        asm.exit_()
        try:
            load_syscall_prog(asm, "cast").close()
            ok = True
        except VerifierError:
            ok = False
    assert feat.features()["addr_space_cast"] is ok


def test_cli_prints_every_feature():
    r = subprocess.run([sys.executable, "-m", "bpfarena", "features"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = {ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()}
    assert names == KEYS


@pytest.mark.parametrize("name", sorted(KEYS - {"kernel_release"}))
def test_missing_features_say_why(name):
    v = feat.probe(name)
    if v is False:
        assert feat.why(name)
    else:
        assert feat.why(name) is None
