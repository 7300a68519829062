"""bpfarena: BPF arenas from Python, on the kernel or in a user-space VM.

The public face only: names are re-exported lazily so that `import bpfarena` stays cheap and a
pure user (reading objects, assembling programs) never touches bpf(2).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import errors
from .arena import Arena
from .collection import Collection, Map, Program, RunResult

__version__ = "0.1.0"

_LAZY = {
    "ObjectSpec": ("bpfarena.obj", "ObjectSpec"),
    "load": ("bpfarena.loader", "load"),
    "compile": ("bpfarena.cc", "compile"),
    "features": ("bpfarena.kernel.features", "features"),
    "BTF": ("bpfarena.btf", "BTF"),
}

__all__ = [
    "Arena",
    "BTF",
    "Collection",
    "Map",
    "ObjectSpec",
    "Program",
    "RunResult",
    "compile",
    "errors",
    "features",
    "load",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bpfarena' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value
