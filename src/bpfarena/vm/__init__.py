"""The user-space back end: BPF programs and arenas without a kernel.

`bpfarena.load(path, backend="vm", user_vm_start=None, budget=...)` and
`bpfarena.Arena(pages, backend="vm")` land here. The parts:

- `arena.py`     VMArena: a sparse memfd mapped MAP_SHARED, with the kernel's page bookkeeping
- `pages.py`     the free-page range tree, ordered like kernel/bpf/range_tree.c (best fit)
- `memory.py`    the memory model: the arena by 32-bit offset, other regions at fake addresses
- `check.py`     load-time checks (NOT the kernel verifier: well-formedness only)
- `arenaflow.py` which registers the verifier would type PTR_TO_ARENA (ALU64 -> ALU32 on them)
- `ctxflow.py`   context accesses: max_ctx_offset, and the ctx loads that give packet pointers
- `translate.py` each program translated once into Python source (registers as locals)
- `interp.py`    Machine: the compiled program bound to memory, helpers and a budget
- `helpers.py`   the helpers and arena kfuncs the VM has; anything else is NotSupportedError
- `maps.py`      hash/array/per-CPU/LRU maps and global data (the VM has one CPU)
- `loader.py`    ObjectSpec -> Collection(backend="vm"); `load_insns` for bare instruction lists

Differences from the kernel that are by design: programs run on CPU 0 (bpf_get_smp_processor_id()
is 0; per-CPU maps show user space one value per possible CPU, as the kernel back end does);
may_goto follows x86-64's timed rule, as the kernel here does (a frame's loops give up once 250 ms
of wall-clock time have passed, checked every 0xffff may_goto steps: not deterministic, but far
inside the default instruction budget); there is no verifier (malformed programs fail at run time with MemoryFault or BudgetExceeded instead of at
load); %p in printk prints the value itself; arena faults are listed in `Program.last_faults`
instead of a BPF stderr stream.
"""

from .arena import VMArena

__all__ = ["VMArena", "load_collection", "load_insns"]


def __getattr__(name: str):
    if name in ("load_collection", "load_insns"):
        from . import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'bpfarena.vm' has no attribute {name!r}")
