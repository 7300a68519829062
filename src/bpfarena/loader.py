"""`bpfarena.load`: pick a back end and load an object into a Collection."""

from __future__ import annotations

import os
import sys
from typing import Any

from .collection import Collection
from .obj import ObjectSpec

BACKENDS = ("kernel", "vm", "auto")


def load(path_or_spec: str | os.PathLike[str] | ObjectSpec, backend: str = "auto",
         **options: Any) -> Collection:
    """Load a BPF object on `backend` ("kernel", "vm" or "auto").

    "auto" takes the kernel where arenas work and the VM elsewhere, and says which on stderr
    (set BPFARENA_QUIET=1 to silence it). Options go to the back end, e.g. `user_vm_start=` for the
    VM, `log_level=` for the kernel.
    """
    spec = path_or_spec if isinstance(path_or_spec, ObjectSpec) else ObjectSpec.from_file(
        os.fspath(path_or_spec))
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from .kernel.diagnose import diagnose
        unavailable = diagnose()
        backend = "kernel" if unavailable is None else "vm"
        why = "kernel arenas are available" if unavailable is None else str(unavailable)
        if not os.environ.get("BPFARENA_QUIET"):
            print(f"bpfarena: backend=auto chose {backend} ({why})", file=sys.stderr)
    if backend == "kernel":
        from .kernel.loader import load_collection
    else:
        from .vm.loader import load_collection
    return load_collection(spec, **options)
