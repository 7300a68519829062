"""`bpfarena bench`: the arena hash table in the kernel (JIT) and in the VM, in one run.

Measures, on this machine: time per insert and per lookup of the arena hash table
(include/arena_htab.h, driven by bench/htab.bpf.c) in the kernel and in the VM, the VM's BPF
instructions per second on that workload, the slowdown of the VM against the kernel JIT, and two
VM micro benchmarks (straight-line ALU code; arena loads and stores). Prints a markdown table and,
with `output`, writes it into that file between markers (the rest of the file is kept).

The kernel side needs CAP_BPF and arenas; without them the kernel rows say why and the VM rows are
still measured.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BPFError, NotSupportedError

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PAGE = 4096


@dataclass
class Row:
    what: str
    kernel: str = "-"
    vm: str = "-"
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def bench_source() -> Path:
    """bench/htab.bpf.c of the source tree ($BPFARENA_BENCH_SRC overrides)."""
    env = os.environ.get("BPFARENA_BENCH_SRC")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2] / "bench" / "htab.bpf.c")
    for c in cands:
        if c.is_file():
            return c
    raise NotSupportedError("bpfarena bench", "bench/htab.bpf.c was not found: run it from a "
                            "source checkout, or set BPFARENA_BENCH_SRC")


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def _htab_round(obj_path: str, backend: str, n: int, **load_opts: Any) -> dict[str, float]:
    """One fresh object: init, insert n keys, look them up; ns per operation and insns."""
    from .loader import load

    with load(obj_path, backend=backend, **load_opts) as obj:
        obj.globals["n_buckets"] = _pow2(n)
        r = obj.programs["bench_init"].run()
        if r.retval != 0:
            raise BPFError(f"bench_init returned {r.retval} on {backend}")
        obj.globals["start"] = 0
        obj.globals["count"] = n
        t0 = time.perf_counter_ns()
        ins = obj.programs["bench_insert"].run()
        t_ins = time.perf_counter_ns() - t0
        if ins.retval != 0:
            raise BPFError(f"bench_insert returned {ins.retval} on {backend}")
        t0 = time.perf_counter_ns()
        look = obj.programs["bench_lookup"].run()
        t_look = time.perf_counter_ns() - t0
        want = n * (n - 1) // 2
        if obj.globals["sum"] != want:
            raise BPFError(f"bench_lookup summed {obj.globals['sum']} on {backend}, want {want}")
        return {
            "insert_ns": (ins.duration_ns or t_ins) / n,
            "lookup_ns": (look.duration_ns or t_look) / n,
            "insert_insns": ins.insns / n,
            "lookup_insns": look.insns / n,
            "insert_ips": ins.insns * 1e9 / ins.duration_ns if ins.insns and ins.duration_ns else 0,
            "lookup_ips": look.insns * 1e9 / look.duration_ns
            if look.insns and look.duration_ns else 0,
        }


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


# --- micro benchmarks (VM): programs assembled in Python ------------------------------------------
def _micro_spec(kind: str, n: int) -> Any:
    from .isa import asm as A
    from .obj.spec import MapSpec, ObjectSpec, ProgramSpec, Relocation, RelocKind

    insns: list[Any] = []
    relocs: list[Relocation] = []
    for r in range(1, 10):
        insns.append(A.mov64(A.Reg(r), r * 0x1234567))
    if kind == "alu":
        ops = [A.add64, A.xor64, A.mul32, A.lsh64, A.rsh64, A.or32, A.sub64, A.and64, A.add32,
               A.arsh64]
        for i in range(n):
            op = ops[i % len(ops)]
            dst, src = A.Reg(1 + i % 9), A.Reg(1 + (i * 7 + 3) % 9)
            if op in (A.lsh64, A.rsh64, A.arsh64):
                insns.append(op(dst, 1 + i % 13))
            elif i % 3:
                insns.append(op(dst, src))
            else:
                insns.append(op(dst, 0x9E37 + i))
    else:
        relocs.append(Relocation(len(insns), RelocKind.ARENA, "arena", 0))
        insns += A.ld_imm64(A.R6, 0)
        insns.append(A.cast_kern(A.R6, A.R6))
        sizes = (8, 4, 2, 1)
        for i in range(n):
            size = sizes[i % 4]
            off = (i * 24) % (PAGE - 8) // size * size
            if i % 2:
                insns.append(A.ldx(size, A.Reg(1 + i % 5), A.R6, off))
            else:
                insns.append(A.stx(size, A.R6, A.Reg(1 + i % 5), off))
    insns.append(A.mov64(A.R0, A.R1))
    insns.append(A.exit_())
    flat: list[Any] = []
    for x in insns:
        flat.extend(x if isinstance(x, list) else [x])
    prog = ProgramSpec(name=f"micro_{kind}", section="syscall", prog_type=31, sleepable=True,
                       insns=flat, relocations=relocs)
    arena = MapSpec(name="arena", type=33, max_entries=4, flags=0x400)
    return ObjectSpec(programs={prog.name: prog}, maps={"arena": arena}, arena_map="arena")


def _micro(kind: str, n: int, runs: int) -> float:
    """VM instructions per second on a straight-line program of n instructions (median run)."""
    from .loader import load

    with load(_micro_spec(kind, n), backend="vm") as obj:
        if kind != "alu":
            obj.arena.alloc_pages(1, addr=obj.arena.user_vm_start)
        prog = obj.programs[f"micro_{kind}"]
        prog.run()  # warm-up (decoding, caches)
        rates = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            r = prog.run()
            dur = r.duration_ns or time.perf_counter_ns() - t0
            rates.append((r.insns or n + 12) * 1e9 / max(dur, 1))
        return statistics.median(rates)  # the machine is shared: the median, not the mean


# --- the run ------------------------------------------------------------------------------------
def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()})")


def measure(quick: bool = False) -> Results:
    from .cc import compile as cc

    res = Results()
    n_kernel, n_vm = (2_000, 100) if quick else (200_000, 20_000)
    reps = 1 if quick else 5
    cache = Path(__file__).resolve().parents[2] / ".cache" / "bpf"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        import tempfile
        cache = Path(tempfile.gettempdir()) / "bpfarena-bench"
        cache.mkdir(exist_ok=True)
    obj_path = str(cc(bench_source(), output_dir=cache))

    kern: dict[str, float] | None = None
    kern_err = ""
    try:
        from .kernel.diagnose import diagnose
        unavailable = diagnose()
        if unavailable is not None:
            raise unavailable.error()
        kern = _median([_htab_round(obj_path, "kernel", n_kernel) for _ in range(reps)])
    except BPFError as e:
        kern_err = str(e).splitlines()[0]
    vm = _median([_htab_round(obj_path, "vm", n_vm) for _ in range(reps)])

    def ns(v: float) -> str:
        return f"{v:,.0f} ns" if v < 1e4 else f"{v / 1e3:,.1f} us"

    K = kern or {}
    res.rows.append(Row("htab insert, per key", ns(K["insert_ns"]) if kern else "-",
                        ns(vm["insert_ns"]), f"kernel N={n_kernel:,}, VM N={n_vm:,}"))
    res.rows.append(Row("htab lookup, per key", ns(K["lookup_ns"]) if kern else "-",
                        ns(vm["lookup_ns"]), "buckets = N rounded up to a power of two"))
    res.rows.append(Row("BPF instructions per insert / lookup", "-",
                        f"{vm['insert_insns']:,.0f} / {vm['lookup_insns']:,.0f}",
                        "counted by the VM"))
    res.rows.append(Row("VM instructions per second, insert", "-",
                        f"{vm['insert_ips'] / 1e6:,.2f} M/s", "RunResult.insns / duration"))
    res.rows.append(Row("VM instructions per second, lookup", "-",
                        f"{vm['lookup_ips'] / 1e6:,.2f} M/s", ""))
    if kern:
        res.rows.append(Row("slowdown VM / kernel JIT, insert", "1x",
                            f"{vm['insert_ns'] / K['insert_ns']:,.0f}x", ""))
        res.rows.append(Row("slowdown VM / kernel JIT, lookup", "1x",
                            f"{vm['lookup_ns'] / K['lookup_ns']:,.0f}x", ""))
    n_micro, runs = (500, 3) if quick else (4000, 30)
    alu = _micro("alu", n_micro, runs)
    mem = _micro("arena", n_micro, runs)
    res.rows.append(Row("micro: straight-line ALU, insns/s", "-", f"{alu / 1e6:,.2f} M/s",
                        f"{n_micro} insns, ALU64/ALU32 mix"))
    res.rows.append(Row("micro: arena loads/stores, insns/s", "-", f"{mem / 1e6:,.2f} M/s",
                        f"{n_micro} insns, 1/2/4/8-byte ldx/stx"))
    res.numbers.update({f"vm_{k}": v for k, v in vm.items()})
    res.numbers.update({f"kernel_{k}": v for k, v in K.items()})
    res.numbers.update({"vm_alu_ips": alu, "vm_arena_ips": mem})
    if kern_err:
        res.notes.append(f"kernel not measured: {kern_err}")
    return res


def to_markdown(res: Results, quick: bool) -> str:
    cmd = "python3 -m bpfarena bench" + (" --quick" if quick else "") + " -o docs/benchmarks.md"
    lines = [BEGIN, "## Arena hash table: kernel JIT vs VM", "",
             f"- Command: `{cmd}` (or `bash scripts/dev bench -o docs/benchmarks.md`)",
             f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
             f"- Machine: {_machine()}",
             "- Workload: bench/htab.bpf.c over include/arena_htab.h (bpf_loop over the keys; "
             "the VM's numbers are medians of its own `duration_ns`)", ""]
    lines += ["| measurement | kernel (JIT) | VM | note |", "|---|---|---|---|"]
    lines += [f"| {r.what} | {r.kernel} | {r.vm} | {r.note} |" for r in res.rows]
    lines += [""] + [f"Note: {n}" for n in res.notes] + [END]
    return "\n".join(lines) + "\n"


def write_section(path: str, text: str) -> None:
    """Put `text` between the markers of `path`, keeping everything else."""
    p = Path(path)
    old = p.read_text() if p.exists() else "# Benchmarks\n\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(new)


def run_bench(quick: bool = False, output: str | None = None) -> int:
    """Measure, print the markdown table, and write it into `output` if given."""
    res = measure(quick)
    text = to_markdown(res, quick)
    sys.stdout.write(text)
    if output:
        write_section(output, text)
        print(f"written to {output}", file=sys.stderr)
    return 0
