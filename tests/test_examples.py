"""Every example in examples/ runs as a subprocess on each back end, and the must-shows hold:
a 100,000-element arena hash table built by BPF is walked completely by Python, and BPF finds
every element of a 100,000-element table Python built (the same for the linked list).

Both back ends run the full 100,000 elements (a few seconds per example on the VM here); set
BPFARENA_VM_EXAMPLE_N to run the VM with a smaller N on a slower machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/*.py") if not p.name.startswith("_"))
KERNEL_N = 100_000
VM_N = int(os.environ.get("BPFARENA_VM_EXAMPLE_N", str(KERNEL_N)))


def _run(script: Path, backend: str, n: int, build_dir: Path) -> dict:
    env = dict(os.environ, BPFARENA_CACHE=str(build_dir), BPFARENA_QUIET="1")
    proc = subprocess.run([sys.executable, str(script), "--backend", backend, "-n", str(n)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"{script.name} printed no RESULT line:\n{proc.stdout}"
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["backend"] == backend
    assert res["ok"] is True
    return res


def test_there_are_examples():
    names = {p.parent.name for p in EXAMPLES}
    assert {"htab", "list"} <= names


def _htab_must_show(res: dict, n: int) -> None:
    # BPF built n elements; Python's pointer walk found all of them with the right values
    assert res["bpf_built"] == n
    assert res["python_walked"] == n
    assert res["python_good"] == n
    assert res["python_complete"] is True
    # Python built n elements; BPF found every one (and none of the n absent keys)
    assert res["python_built"] == n
    assert res["bpf_found"] == n
    assert res["bpf_missing"] == n
    assert res["bpf_checksum"] == res["python_checksum"]


def _list_must_show(res: dict, n: int) -> None:
    assert res["python_walked"] == n and res["python_good"] == n
    assert res["bpf_walked"] == n
    assert res["bpf_link_errors"] == 0
    assert res["bpf_checksum"] == res["python_checksum"]


MUST_SHOW = {"htab": _htab_must_show, "list": _list_must_show}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.parent.name)
def test_example(backend, build_dir, script):
    n = KERNEL_N if backend == "kernel" else VM_N
    res = _run(script, backend, n, build_dir)
    assert res["n"] == n
    check = MUST_SHOW.get(script.parent.name)
    if check is not None:
        check(res, n)


def test_demo_runs(backend, capsys):
    from bpfarena.demo import run_demo
    n = 5_000
    lines: list[str] = []
    assert run_demo(backend, n=n, say=lines.append) == 0
    text = "\n".join(lines)
    assert f"on the {backend} back end" in text
    assert text.count("both directions agree") == 2
    assert "all examples passed" in text
