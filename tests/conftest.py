"""One corpus over every back end.

`backend` is parametrized over "kernel" and "vm". Kernel cases skip with a reason where this kernel
lacks arenas, and fail instead under BPFARENA_REQUIRE_KERNEL=1 (CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROGS = HERE / "progs"
REQUIRE_KERNEL = os.environ.get("BPFARENA_REQUIRE_KERNEL") == "1"

BACKENDS = ["kernel", "vm"]


def _kernel_reason() -> str | None:
    try:
        from bpfarena.kernel.features import arenas_available, why_unavailable
    except Exception as e:  # the kernel back end itself is broken: that is a failure, not a skip
        return f"kernel back end cannot be imported: {e!r}"
    if arenas_available():
        return None
    return why_unavailable() or "BPF arenas are not available here"


def require_kernel() -> None:
    """Skip (or, in CI, fail) when the kernel cannot run arenas."""
    reason = _kernel_reason()
    if reason is None:
        return
    if REQUIRE_KERNEL:
        pytest.fail(f"BPFARENA_REQUIRE_KERNEL=1 but: {reason}")
    pytest.skip(reason)


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
