"""One corpus over every back end, and the rule for skips.

`backend` is parametrized over "kernel" and "vm". A test may skip for one reason only: the host
kernel cannot run arenas (the diagnosis of `bpfarena.kernel.diagnose`), or a kernel case that
would trip a known kernel bug on this release (`bpfarena.kernel.bugs`). Any other skip (a missing
header, a broken import, a probe that failed) is turned into a failure. The skipped kernel cases
are counted and their reason printed once, in a banner at the end of the run. Under
BPFARENA_REQUIRE_KERNEL=1 (inside a guest kernel, say) the host skip is a failure too.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROGS = HERE / "progs"
REQUIRE_KERNEL = os.environ.get("BPFARENA_REQUIRE_KERNEL") == "1"

BACKENDS = ["kernel", "vm"]

# the skip reasons this run allows, and how many tests skipped for each
_ALLOWED_SKIPS: set[str] = set()
_SKIPS: Counter[str] = Counter()


def require_kernel() -> None:
    """Skip (or fail, under BPFARENA_REQUIRE_KERNEL=1) where the host kernel cannot run arenas."""
    try:
        from bpfarena.kernel.diagnose import HOST_CAUSES, diagnose
    except Exception as e:  # the kernel back end itself is broken: a failure, not a skip
        pytest.fail(f"the kernel back end cannot be imported: {e!r}")
    d = diagnose()
    if d is None:
        return
    if REQUIRE_KERNEL:
        pytest.fail(f"BPFARENA_REQUIRE_KERNEL=1 but {d}")
    if d.cause not in HOST_CAUSES:
        pytest.fail(f"the arena probe itself failed, which is a bug: {d}")
    _ALLOWED_SKIPS.add(str(d))
    pytest.skip(str(d))


def avoid_kernel_bug(bug) -> None:
    """Skip a kernel case on a release that `bug` (a bpfarena.kernel.bugs.KernelBug) would crash."""
    from bpfarena.kernel.bugs import has_fix

    if has_fix(bug):
        return
    reason = (f"not run on Linux {os.uname().release}: it would trip kernel bug {bug.name} "
              f"(fixed by {bug.fix}; see docs/kernels.md)")
    _ALLOWED_SKIPS.add(reason)
    pytest.skip(reason)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if reason in _ALLOWED_SKIPS:
        _SKIPS[reason] += 1
        return
    report.outcome = "failed"
    report.longrepr = (f"this test skipped ({reason}); a test may skip only because the host "
                       "kernel cannot run arenas (tests/conftest.py)")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"a whole module skipped ({reason}); only kernel cases may skip"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _SKIPS:
        return
    tr = terminalreporter
    tr.section("kernel back end", sep="=", bold=True)
    for reason, n in _SKIPS.most_common():
        tr.write_line(f"{n} kernel case{'s' if n != 1 else ''} did not run: {reason}")
    from bpfarena.kernel.diagnose import Diagnosis

    if any(r.startswith(Diagnosis.PREFIX) for r in _SKIPS):
        tr.write_line("The kernel back end was not exercised on this host; the VM cases ran. "
                      "Kernel cases run where the host kernel allows arenas.")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "kernel":
        require_kernel()
    return request.param


@pytest.fixture
def kernel() -> str:
    require_kernel()
    return "kernel"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kernel" in item.fixturenames or (
            hasattr(item, "callspec") and item.callspec.params.get("backend") == "kernel"
        ):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = HERE.parent / ".cache" / "bpf"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def bpf_obj(build_dir: Path):
    """Compile a BPF C source (name relative to tests/progs, or a path) once; returns the .o path."""
    from bpfarena.cc import compile as cc

    def build(src: str | Path) -> Path:
        src = Path(src)
        if not src.is_absolute():
            src = PROGS / src
        return Path(cc(src, output_dir=build_dir))

    return build
