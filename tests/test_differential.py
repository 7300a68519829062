"""The kernel is the oracle: every BPF C program meant for both back ends, run in the kernel and in
the VM (its arena at the kernel's user_vm_start), must leave the same state behind, case by case.

After every step both sides are compared on: the return value, every global (`obj.globals`),
every arena global (`obj.arena.globals`), the contents of the hash and array maps, the number of
resident arena pages, and every arena page byte for byte. Reading pages from Python faults them in
(on both back ends alike), which would change where later BPF allocations land, so the byte
comparison after step k runs on a fresh load that replays steps 1..k.

CASES below is the explicit table: which object, which steps in which order, with which inputs.
`test_every_program_is_listed` makes sure a new .bpf.c in tests/progs or examples/ is either in
the table or listed in NOT_DIFFERENTIAL with the reason.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bpfarena

HERE = Path(__file__).parent
ROOT = HERE.parent
PROGS = HERE / "progs"
EXAMPLES = ROOT / "examples"
BENCH = ROOT / "bench"
PAGE = 4096


@dataclass(frozen=True)
class Run:
    prog: str
    ctx: bytes = b""


@dataclass(frozen=True)
class Set:
    """obj.globals[name] = value (a value, or a function of the loaded object)."""

    name: str
    value: Any


@dataclass(frozen=True)
class ArenaWrite:
    offset: int
    data: bytes


@dataclass(frozen=True)
class Py:
    """A deterministic Python-side action on the loaded object (e.g. building a bpfarena.ds
    structure in the arena), done identically on both back ends."""

    what: str
    fn: Callable[[Any], None]

    def __repr__(self) -> str:
        return f"Py({self.what})"


Step = Run | Set | ArenaWrite | Py


@dataclass(frozen=True)
class Case:
    src: Path
    steps: list[Step]
    flags: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # globals that legitimately differ (clocks, random numbers)
    cpu: str | None = None  # clang -mcpu (None: bpfarena's default)


def _py_htab(o: Any) -> None:
    from bpfarena.ds import ArenaHashTable

    o.globals["table"] = ArenaHashTable.build(o.arena, {k: 3 * k - 1000 for k in range(1500)},
                                              n_buckets=512)


def _py_list(o: Any) -> None:
    from bpfarena.ds import ArenaList

    o.globals["head"] = ArenaList.build(o.arena, list(range(1, 301)))


def _py_long_list(o: Any) -> None:
    from bpfarena.ds import ArenaList

    o.globals["head"] = ArenaList.build(o.arena, [i * 7 for i in range(3000)])


ATOMIC_PROGS = ["add", "sub", "and", "or", "xor", "cmpxchg", "xchg"]
ASM = ("-DBPFARENA_FORCE_ASM",)

CASES: dict[str, Case] = {
    # the selftest faults page 0 in from user space first
    "arena_htab": Case(PROGS / "arena_htab.bpf.c", [ArenaWrite(0x800, b"\xaa\x55"),
                                                    Run("arena_htab_build")]),
    "arena_list_1": Case(PROGS / "arena_list.bpf.c", [Set("cnt", 1), Run("list_add"),
                                                      Run("list_del")]),
    "arena_list_1000": Case(PROGS / "arena_list.bpf.c", [Set("cnt", 1000), Run("list_add"),
                                                         Run("list_del")]),
    "arena_atomics": Case(PROGS / "arena_atomics.bpf.c", [Run(p) for p in ATOMIC_PROGS]),
    "arena_atomics_twice": Case(PROGS / "arena_atomics.bpf.c",
                                [Run(p) for p in ATOMIC_PROGS[::-1] + ATOMIC_PROGS]),
    "arena_asm": Case(PROGS / "arena_asm.bpf.c", [Run("asm_casts")], flags=ASM),
    "load_arena": Case(PROGS / "load_arena.bpf.c", [Run("read_globals"), Run("alloc"),
                                                    Run("alloc"), Run("read_globals")]),
    "load_globals": Case(PROGS / "load_globals.bpf.c", [
        Run("compute"), Run("use_maps"), Set("counter", -100), Run("compute"),
        Run("use_maps")]),
    "load_core": Case(PROGS / "load_core.bpf.c", [Run("core_offsets")]),
    "load_packet": Case(PROGS / "load_packet.bpf.c", [Run("pkt_len")]),
    "compat_asm": Case(PROGS / "compat_asm.bpf.c", [ArenaWrite(0, b"\xaa\x55\0\0"),
                                                    Run("build")], flags=ASM),
    "compat_list": Case(PROGS / "compat_list.bpf.c", [Set("cnt", 1000), Run("push_all"),
                                                      Run("pop_all")]),
    "compat_atomics_other_pid": Case(PROGS / "compat_atomics.bpf.c", [
        Set("pid", os.getpid() + 1), Run("fetch_ops"), Run("bit_ops"), Run("acquire_release")]),
    "compat_atomics": Case(PROGS / "compat_atomics.bpf.c", [
        Set("pid", os.getpid()), Run("fetch_ops"), Run("bit_ops"), Run("acquire_release")]),
    "audit_core": Case(PROGS / "audit_core.bpf.c", [
        Run("read_init"), Run("alloc_free"),
        Set("bss_ptr2", lambda o: o.arena.user_vm_start + 4 * PAGE),  # the hint page
        *[Run(p) for p in ("alloc_hint", "reserve", "unalloc_store", "build_list", "walk_list",
                           "casts", "wrap32", "atomics", "atomics_fault", "ucast")]]),
    "audit_alu": Case(PROGS / "audit_alu.bpf.c", [Run("alu"), Run("alu32")], cpu="v4"),
    "audit_v4": Case(PROGS / "audit_v4.bpf.c", [Run("v4ops")], cpu="v4"),
    "audit_named": Case(PROGS / "audit_named.bpf.c", [Run("one"), Run("two"), Run("one")]),
    "audit_flags": Case(PROGS / "audit_flags.bpf.c", [Run("conv"), Run("ucast")]),
    "audit_segv": Case(PROGS / "audit_segv.bpf.c", [Run("edge")]),
    "audit_misc": Case(PROGS / "audit_misc.bpf.c", [
        Run("call_global"), Run("printk"), Run("loop"), Run("lock"), Run("maps"),
        Run("ctx_echo", struct.pack("<QQ", 40, 2)), Run("signed_ret")]),
    "ex_helpers": Case(PROGS / "ex_helpers.bpf.c", [Run("helpers")],
                       ignore=("t0", "t1", "rnd_or", "rnd_and", "cpu")),
    "ex_ds": Case(PROGS / "ex_ds.bpf.c", [
        Py("ArenaHashTable.build", _py_htab), Set("nr_keys", 1600), Run("htab_sum"),
        Set("lo", 100), Set("hi", 300), Run("htab_update"), Set("lo", 1000), Set("hi", 1500),
        Run("htab_delete"), Run("htab_sum"), Py("ArenaList.build", _py_list),
        Set("pops", 120), Run("list_pop")]),
    # chains of 600 (2 buckets): can_loop walks, well past the old 64-step cap
    "ex_longchain": Case(PROGS / "ex_longchain.bpf.c", [
        Set("n_buckets", 2), Set("nr_keys", 1200), Run("htab_build"), Set("nr_keys", 1250),
        Run("htab_check"), Py("ArenaList.build", _py_long_list), Run("list_walk"),
        Set("max_steps", 500), Run("list_walk_bounded"), Set("target", 5000), Run("cond_count")]),
    "ex_htab": Case(EXAMPLES / "htab" / "htab.bpf.c", [
        Set("nr_elems", 3000), Set("nr_buckets", 4096), Run("build"),
        # BPF looks up every key of the table BPF built, through py_table
        Set("py_table", lambda o: o.globals["bpf_table"]), Set("nr_keys", 3500),
        Run("lookup_all")]),
    "ex_list": Case(EXAMPLES / "list" / "list.bpf.c", [
        Set("nr_elems", 2000), Run("build"),
        Set("py_list", lambda o: o.arena.globals.address("bpf_list")), Run("sum_py")]),
    "bench_htab": Case(BENCH / "htab.bpf.c", [
        Set("n_buckets", 1024), Run("bench_init"), Set("start", 0), Set("count", 1500),
        Run("bench_insert"), Set("start", 700), Run("bench_insert"), Set("start", 0),
        Set("count", 2500), Run("bench_lookup")]),
}

# programs that are not run on both back ends here, and why
NOT_DIFFERENTIAL = {
    "load_bad.bpf.c": "the verifier must reject these (tests/test_verifier.py)",
    "audit_bad.bpf.c": "holds a program the verifier must reject, so the object cannot load",
    "load_ksyms.bpf.c": "reads a kernel variable (init_task) that only the kernel has",
    "load_percpu.bpf.c": "per-CPU values depend on the CPU the kernel ran it on",
    "obj_basic.bpf.c": "object-reader fixture, not meant to run",
    "obj_misc.bpf.c": "object-reader fixture, not meant to run",
    "obj_no_arena.bpf.c": "object-reader fixture, not meant to run",
    "obj_nobtf.bpf.c": "object-reader fixture, not meant to run",
    "obj_two_arenas.bpf.c": "object-reader fixture (two arenas: refused at load)",
    "audit2_ds.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
    "audit2_edge.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
    "audit2_large.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
    "audit2_ops.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
    "audit2_kfunc.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
    "audit2_types.bpf.c": "tests/test_audit2.py compares kernel and VM itself",
}


def _source_files() -> list[Path]:
    files = sorted(PROGS.glob("*.bpf.c")) + sorted(EXAMPLES.glob("**/*.bpf.c"))
    return files + [BENCH / "htab.bpf.c"]


def test_every_program_is_listed() -> None:
    """A new test or example program is added here too. The acceptance audit's probes
    (audit*.bpf.c) are exempt: their inputs and expectations live with the audit; the ones
    that run without special inputs are in CASES anyway."""
    listed = {c.src.resolve() for c in CASES.values()}
    missing = [str(f.relative_to(ROOT)) for f in _source_files()
               if f.resolve() not in listed and f.name not in NOT_DIFFERENTIAL
               and not f.name.startswith("audit")]
    assert not missing, f"add these to CASES or NOT_DIFFERENTIAL in {Path(__file__).name}: " \
                        f"{missing}"


# --- the comparison -----------------------------------------------------------------------------
def _value(v: Any) -> Any:
    return bytes(v) if isinstance(v, (bytearray, memoryview)) else v


def _pages(arena: Any) -> list[bytes | None]:
    """Every page's bytes; None where user space may not touch it (BPF_F_SEGV_ON_FAULT)."""
    out: list[bytes | None] = []
    for pg in range(arena.max_pages):
        try:
            out.append(arena.read(arena.user_vm_start + pg * PAGE, PAGE))
        except bpfarena.errors.ArenaError:
            out.append(None)
    return out


def state(obj: Any, with_pages: bool, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything observable from Python after a step."""
    s: dict[str, Any] = {}
    s["globals"] = {n: _value(obj.globals[n]) for n in obj.globals if n not in ignore}
    arena = obj.arena
    if arena is not None:
        try:
            ag = arena.globals
        except bpfarena.errors.ArenaError:
            ag = None
        if ag is not None:
            s["arena_globals"] = {n: _value(ag[n]) for n in ag}
        s["resident"] = arena.resident_pages()
    for name, m in sorted(obj.maps.items()):
        if m.type in (1, 2) and not name.startswith("."):  # hash, array (not global data)
            s[f"map {name}"] = sorted(m.items())
    if with_pages and arena is not None:
        s["pages"] = _pages(arena)
    return s


def apply(obj: Any, step: Step) -> int | None:
    if isinstance(step, Run):
        return obj.programs[step.prog].run(ctx=step.ctx).retval
    if isinstance(step, Set):
        v = step.value(obj) if callable(step.value) else step.value
        obj.globals[step.name] = v
        return None
    if isinstance(step, Py):
        step.fn(obj)
        return None
    obj.arena.write(obj.arena.user_vm_start + step.offset, step.data)
    return None


def _page_diff(a: list[bytes | None], b: list[bytes | None], start: int) -> str:
    out = []
    for pg, (x, y) in enumerate(zip(a, b, strict=True)):
        if x == y:
            continue
        if x is None or y is None:
            out.append(f"page {pg} (0x{start + pg * PAGE:x}): readable on the "
                       f"{'VM' if x is None else 'kernel'} only")
        else:
            i = next(i for i in range(PAGE) if x[i] != y[i])
            o = i - i % 8
            out.append(f"page {pg} (0x{start + pg * PAGE:x}) first differs at +0x{i:x}: "
                       f"kernel {x[o:o + 16].hex()} vm {y[o:o + 16].hex()}")
        if len(out) >= 8:
            break
    return "\n".join(out)


def compare(k: dict[str, Any], v: dict[str, Any], where: str, start: int) -> None:
    problems = []
    for key in sorted(set(k) | set(v)):
        a, b = k.get(key), v.get(key)
        if a == b:
            continue
        if key == "pages" and a is not None and b is not None:
            problems.append(_page_diff(a, b, start))
        elif isinstance(a, dict) and isinstance(b, dict):
            diffs = {n: (a.get(n), b.get(n)) for n in set(a) | set(b) if a.get(n) != b.get(n)}
            problems.append(f"{key} differ (name: (kernel, vm)): {diffs}")
        else:
            problems.append(f"{key}: kernel {a!r} vm {b!r}")
    assert not problems, f"{where}: kernel and VM differ\n" + "\n".join(problems)


def _replay(path: str, case: Case, upto: int, with_pages: bool) -> None:
    steps = case.steps
    with bpfarena.load(path, backend="kernel") as kobj:
        start = kobj.arena.user_vm_start if kobj.arena is not None else None
        opts = {"user_vm_start": start} if start is not None else {}
        with bpfarena.load(path, backend="vm", **opts) as vobj:
            if start is not None:
                assert vobj.arena.user_vm_start == start
            for i, step in enumerate(steps[:upto]):
                rk, rv = apply(kobj, step), apply(vobj, step)
                last = i == upto - 1
                if rk is None and not last:
                    continue
                where = f"after step {i + 1} {step}"
                pages = with_pages and last
                sk, sv = state(kobj, pages, case.ignore), state(vobj, pages, case.ignore)
                sk["retval"], sv["retval"] = rk, rv
                compare(sk, sv, where, start or 0)


@pytest.fixture
def one_cpu():
    """Run on CPU 0: the allocator keeps per-CPU state (bpf_get_smp_processor_id) in the arena,
    and the VM is CPU 0; a syscall program's test run executes on the calling CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield 0
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_and_vm_leave_the_same_state(name: str, kernel: str, bpf_obj, one_cpu) -> None:
    from bpfarena.cc import compile as cc

    case = CASES[name]
    build_dir = ROOT / ".cache" / "bpf"
    if case.flags or case.cpu:
        kw = {"cpu": case.cpu} if case.cpu else {}
        path = str(cc(case.src, output_dir=build_dir, extra_flags=list(case.flags), **kw))
    else:
        path = str(bpf_obj(case.src))
    # every step compared without reading pages, then each prefix replayed with a page compare
    _replay(path, case, len(case.steps), False)
    for upto in range(1, len(case.steps) + 1):
        if upto == len(case.steps) or isinstance(case.steps[upto - 1], Run):
            _replay(path, case, upto, True)


def test_the_comparison_sees_a_difference(kernel: str, bpf_obj) -> None:
    """The harness itself: one byte written on one side only is reported with its page."""
    path = str(bpf_obj(PROGS / "load_arena.bpf.c"))
    with bpfarena.load(path, backend="kernel") as kobj, \
            bpfarena.load(path, backend="vm", user_vm_start=kobj.arena.user_vm_start) as vobj:
        for o in (kobj, vobj):
            o.programs["alloc"].run()
        vobj.arena.write(vobj.arena.globals.address("a_seen") + PAGE, b"\x01")
        with pytest.raises(AssertionError, match=r"page 1 .* first differs"):
            compare(state(kobj, True), state(vobj, True), "test", kobj.arena.user_vm_start)
