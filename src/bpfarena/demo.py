"""`bpfarena demo`: the examples in examples/ (hash table and list, built on each side and used on
the other), with a short narrative of what happened where."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from .errors import BPFError

__all__ = ["examples_dir", "run_demo"]

DEMOS = (("htab", "htab.py", "a hash table of linked lists"),
         ("list", "list.py", "a plain linked list"))
KERNEL_N = 100_000
VM_N = 100_000  # the VM does the full size in a few seconds per example


def examples_dir() -> Path | None:
    """examples/ of a source checkout (or $BPFARENA_EXAMPLES), None when not found."""
    env = os.environ.get("BPFARENA_EXAMPLES")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2] / "examples")
    for c in cands:
        if (c / "htab" / "htab.py").is_file():
            return c
    return None


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bpfarena_example_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _resolve(backend: str) -> tuple[str, str]:
    if backend != "auto":
        return backend, "asked for"
    from .kernel.diagnose import diagnose
    unavailable = diagnose()
    if unavailable is None:
        return "kernel", "kernel arenas are available"
    return "vm", str(unavailable)


def run_demo(backend: str = "auto", n: int | None = None,
             say: Callable[[str], None] = print) -> int:
    """Run each example on `backend` and tell the story; returns a process exit code."""
    where = examples_dir()
    if where is None:
        print("bpfarena demo: examples/ not found (run from a source checkout, or set "
              "BPFARENA_EXAMPLES to the examples directory)", file=sys.stderr)
        return 1
    chosen, why = _resolve(backend)
    if n is None:
        n = KERNEL_N if chosen == "kernel" else VM_N
    say(f"bpfarena demo on the {chosen} back end ({why}), {n} elements per structure")
    say("BPF C: examples/*/*.bpf.c with bpfarena's headers (arena_alloc.h, arena_list.h, "
        "arena_htab.h), compiled by clang-19")
    failures = 0
    for name, script, what in DEMOS:
        say("")
        say(f"== {name}: {what} ==")
        try:
            res = _load(where / name / script).run(chosen, n, say=lambda s: say("  " + s))
        except (BPFError, RuntimeError, OSError) as e:
            say(f"  error: {e}")
            failures += 1
            continue
        say(f"  => {'both directions agree' if res['ok'] else 'MISMATCH'}")
        failures += not res["ok"]
    say("")
    say("all examples passed" if not failures else f"{failures} example(s) failed")
    return 0 if not failures else 1
