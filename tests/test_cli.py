"""The `bpfarena` command in a subprocess: inspect annotates relocations, a closed pipe is quiet."""

from __future__ import annotations

import subprocess
import sys


def _bpfarena(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bpfarena", *args], capture_output=True,
                          text=True, timeout=120)


def test_inspect_names_what_each_relocated_instruction_refers_to(bpf_obj):
    out = _bpfarena("inspect", "-d", str(bpf_obj("load_arena.bpf.c")))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(ln.strip().startswith("map arena: type=33") for ln in lines)
    assert any("r1 = 0x0 ll  ; arena arena+" in ln for ln in lines)  # an arena global
    assert any("; kfunc bpf_arena_alloc_pages" in ln for ln in lines)


def test_inspect_into_a_closed_pipe_is_not_an_error(bpf_obj, monkeypatch):
    """`bpfarena inspect -d x.o | head`: the reader going away ends the command quietly."""
    from bpfarena import cli

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["inspect", "-d", str(bpf_obj("load_arena.bpf.c"))]) == 0
