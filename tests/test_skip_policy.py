"""The suite's rule for skips (tests/conftest.py), checked by running pytest on small test files.

A stray skip (a missing header, a failed import) fails; a kernel case may skip only with the
host's arena diagnosis, or to avoid a known kernel bug on this release; the reason is printed
once, in a banner; BPFARENA_REQUIRE_KERNEL=1 turns the host skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bpfarena.kernel.diagnose import diagnose

HERE = Path(__file__).resolve().parent

CASES = '''
import pytest
from bpfarena.kernel.bugs import KernelBug
from conftest import avoid_kernel_bug

EVERYWHERE = KernelBug(name="test-bug", summary="a bug every release has", fix="none",
                       introduced=(0, 0), fixed_mainline=(999, 0), fixed_stable={})


def test_stray_skip():
    pytest.skip("bpf/bpf_helpers.h not found")


@pytest.mark.skipif(True, reason="clang-19 is not installed")
def test_skipif():
    pass


def test_kernel_case(kernel):
    assert kernel == "kernel"


def test_known_kernel_bug():
    avoid_kernel_bug(EVERYWHERE)


def test_plain():
    assert 1 + 1 == 2
'''


def _run(tmp_path: Path, require_kernel: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_cases.py").write_text(CASES)
    env = dict(os.environ, BPFARENA_REQUIRE_KERNEL="1" if require_kernel else "0")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rfE", str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def _outcome(out: str, test: str) -> str:
    for line in out.splitlines():
        if line.startswith(("FAILED", "ERROR")) and f"::{test}" in line:
            return "failed"
    return "not failed"


@pytest.mark.parametrize("require_kernel", [False, True])
def test_only_the_host_diagnosis_and_known_bugs_may_skip(tmp_path, require_kernel):
    r = _run(tmp_path, require_kernel)
    out = r.stdout + r.stderr
    assert _outcome(out, "test_stray_skip") == "failed"
    assert "bpf/bpf_helpers.h not found" in out and "may skip only" in out
    assert _outcome(out, "test_skipif") == "failed"
    assert _outcome(out, "test_known_kernel_bug") == "not failed"
    assert _outcome(out, "test_plain") == "not failed"
    assert "kernel case did not run: not run on Linux" in out  # the bug skip, in the banner
    d = diagnose()
    if d is None:  # arenas work on this host: the kernel case ran
        assert _outcome(out, "test_kernel_case") == "not failed"
        assert "kernel arenas are unavailable" not in out
    elif require_kernel:
        assert _outcome(out, "test_kernel_case") == "failed"
        assert f"BPFARENA_REQUIRE_KERNEL=1 but {d}" in out
    else:
        assert _outcome(out, "test_kernel_case") == "not failed"
        # printed once, in the banner, with the count
        assert out.count(str(d)) == 1 and f"1 kernel case did not run: {d}" in out
    assert r.returncode == 1
