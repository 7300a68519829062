#!/usr/bin/env python3
"""A linked list in a BPF arena, built on one side and walked on the other.

1. BPF pushes N elements (value i * 0x9E3779B97F4A7C15 mod 2^64) onto an arena-global list head;
   Python walks the list by following the stored pointers and checks every value and link.
2. Python builds a list of N random values with its own writes (user-form pointers, the layout
   of arena_list.h); BPF walks it, checks every back link and returns the count and a checksum.

    python examples/list/list.py [--backend kernel|vm|auto] [-n N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import bpfarena
from bpfarena.ds import ArenaList
from bpfarena.errors import BPFError

HERE = Path(__file__).resolve().parent
MAX_N = 1_000_000
GOLDEN = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def cache_dir() -> Path:
    return Path(os.environ.get("BPFARENA_CACHE", Path.home() / ".cache" / "bpfarena"))


def run(backend: str = "auto", n: int = 100_000, seed: int = 1, say=print) -> dict:
    """Run both directions; returns what each side saw (and `ok`)."""
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be between 1 and {MAX_N}")
    obj_path = bpfarena.compile(HERE / "list.bpf.c", output_dir=cache_dir())
    res: dict = {"example": "list", "n": n}
    with bpfarena.load(obj_path, backend=backend) as obj:
        arena = obj.arena
        res["backend"] = obj.backend
        say(f"[{obj.backend}] arena: {arena.max_pages} pages at 0x{arena.user_vm_start:x}")

        # --- 1. BPF builds, Python walks ------------------------------------------------------
        obj.globals["nr_elems"] = n
        r = obj.programs["build"].run()
        if r.retval != 0:
            raise RuntimeError(f"build returned {r.retval} (error {obj.globals['error']})")
        head = arena.globals.address("bpf_list")
        say(f"BPF: pushed {n} elements onto bpf_list (arena global at 0x{head:x}) in "
            f"{r.duration_ns / 1e6:.1f} ms; {arena.resident_pages()} arena pages in use")
        try:  # the BTF-typed view, where this build has it
            v = arena.view(obj.globals["first_elem"], "struct list_elem", btf=obj.btf)
            say(f"Python: view of the first struct list_elem: value=0x{v.value:x}")
        except (BPFError, ImportError, AttributeError, KeyError, TypeError) as e:
            say(f"Python: (typed view not available: {type(e).__name__})")
        t0 = time.perf_counter()
        lst = ArenaList(arena, head)
        values = lst.values()
        lst.check_links()
        t_walk = time.perf_counter() - t0
        expect = [(i * GOLDEN) & M64 for i in range(n - 1, -1, -1)]  # add_head: newest first
        good = sum(1 for a, b in zip(values, expect, strict=False) if a == b)
        say(f"Python: walked {len(values)} nodes in {t_walk:.2f} s, every pprev link checked; "
            f"{good} values in the expected (newest first) order")
        res.update(bpf_built=n, python_walked=len(values), python_good=good)

        # --- 2. Python builds, BPF walks ------------------------------------------------------
        rng = random.Random(seed)
        py_values = [rng.getrandbits(64) for _ in range(n)]
        t0 = time.perf_counter()
        py_head = ArenaList.build(arena, py_values)
        t_build = time.perf_counter() - t0
        expect_sum = sum(py_values) & M64
        say(f"Python: built a list of {n} random values with its own writes in {t_build:.2f} s; "
            f"head at 0x{py_head:x}")
        obj.globals["py_list"] = py_head
        r = obj.programs["sum_py"].run()
        if r.retval != 0:
            raise RuntimeError(f"sum_py returned {r.retval}")
        count, checksum = obj.globals["count"], obj.globals["checksum"] & M64
        link_errors = obj.globals["order_errors"]
        say(f"BPF: walked {count} nodes in {r.duration_ns / 1e6:.1f} ms, {link_errors} bad back "
            f"links, checksum 0x{checksum:016x}")
        ok2 = (count, checksum, link_errors) == (n, expect_sum, 0)
        say(f"Python: expected {n} nodes, checksum 0x{expect_sum:016x} -> "
            f"{'match' if ok2 else 'MISMATCH'}")
        res.update(python_built=n, bpf_walked=count, bpf_link_errors=link_errors,
                   bpf_checksum=checksum, python_checksum=expect_sum)
    res["ok"] = res["python_walked"] == n and res["python_good"] == n and ok2
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", "--backend", default="auto", choices=["kernel", "vm", "auto"])
    ap.add_argument("-n", type=int, default=100_000, help="list length (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        res = run(a.backend, a.n, a.seed)
    except (BPFError, RuntimeError, ValueError) as e:
        print(f"list: error: {e}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(res))
    print("OK" if res["ok"] else "FAILED")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
