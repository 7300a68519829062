#!/usr/bin/env python3
"""A hash table of linked lists in a BPF arena, built on one side and used on the other.

1. BPF builds a table of N elements (key i, value 7*i + 3) in the arena; Python walks it by
   following the stored pointers and checks every element.
2. Python builds a table of N elements with its own writes (user-form pointers, the layout of
   arena_htab.h); BPF looks every key up and returns a checksum, which Python compares with its own.

    python examples/htab/htab.py [--backend kernel|vm|auto] [-n N]
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
from bpfarena.ds import ArenaHashTable
from bpfarena.errors import BPFError

HERE = Path(__file__).resolve().parent
MAX_N = 1_000_000


def value_of(key: int) -> int:
    return key * 7 + 3  # VALUE() in htab.bpf.c


def cache_dir() -> Path:
    return Path(os.environ.get("BPFARENA_CACHE", Path.home() / ".cache" / "bpfarena"))


def buckets_for(n: int) -> int:
    """A power of two near n / 4: chains of about four elements, so lists really get used."""
    return max(16, 1 << max(0, (n // 4 - 1)).bit_length())


def run(backend: str = "auto", n: int = 100_000, seed: int = 1, say=print) -> dict:
    """Run both directions; returns what each side saw (and `ok`)."""
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be between 1 and {MAX_N}")
    obj_path = bpfarena.compile(HERE / "htab.bpf.c", output_dir=cache_dir())
    res: dict = {"example": "htab", "n": n}
    with bpfarena.load(obj_path, backend=backend) as obj:
        arena = obj.arena
        res["backend"] = obj.backend
        say(f"[{obj.backend}] arena: {arena.max_pages} pages at 0x{arena.user_vm_start:x}")

        # --- 1. BPF builds, Python walks ------------------------------------------------------
        nb = buckets_for(n)
        obj.globals["nr_elems"] = n
        obj.globals["nr_buckets"] = nb
        r = obj.programs["build"].run()
        if r.retval != 0:
            raise RuntimeError(f"build returned {r.retval} (error {obj.globals['error']})")
        ptr = obj.globals["bpf_table"]
        say(f"BPF: built a table of {n} elements in {nb} buckets "
            f"in {r.duration_ns / 1e6:.1f} ms; "
            f"table at 0x{ptr:x}, {arena.resident_pages()} arena pages in use")
        try:  # the BTF-typed view, where this build has it
            v = arena.view(ptr, "struct arena_htab", btf=obj.btf)
            say(f"Python: view of struct arena_htab: n_buckets={v.n_buckets}, "
                f"buckets=0x{int(v.buckets):x}")
        except (BPFError, ImportError, AttributeError, KeyError, TypeError) as e:
            say(f"Python: (typed view not available: {type(e).__name__})")
        t0 = time.perf_counter()
        table = ArenaHashTable(arena, ptr)
        elems = table.elements()
        t_walk = time.perf_counter() - t0
        keys = elems["key"].astype("int64")
        good = int((elems["value"].astype("int64") == keys * 7 + 3).sum())
        distinct = len(set(keys.tolist()))
        complete = distinct == n and int(keys.min()) == 0 and int(keys.max()) == n - 1
        chains = table.chain_lengths()
        say(f"Python: walked {len(elems)} elements by following stored pointers in "
            f"{t_walk:.2f} s ({distinct} distinct keys, {good} with value 7*key+3, "
            f"longest chain {int(chains.max())})")
        res.update(bpf_built=n, python_walked=len(elems), python_good=good,
                   python_complete=complete)

        # --- 2. Python builds, BPF looks up ---------------------------------------------------
        rng = random.Random(seed)
        py_keys = rng.sample(range(2 * n), n)  # half of [0, 2n): BPF must also miss the rest
        items = {k: rng.randrange(-(1 << 31), 1 << 31) for k in py_keys}
        t0 = time.perf_counter()
        addr = ArenaHashTable.build(arena, items, n_buckets=buckets_for(n))
        t_pybuild = time.perf_counter() - t0
        expect_sum = sum(items.values()) % (1 << 64)
        say(f"Python: built a table of {n} elements (random keys in [0, {2 * n}), random values) "
            f"with its own writes in {t_pybuild:.2f} s; table at 0x{addr:x}")
        obj.globals["py_table"] = addr
        obj.globals["nr_keys"] = 2 * n
        r = obj.programs["lookup_all"].run()
        if r.retval != 0:
            raise RuntimeError(f"lookup_all returned {r.retval}")
        found, missing = obj.globals["found"], obj.globals["missing"]
        checksum = obj.globals["checksum"] % (1 << 64)
        say(f"BPF: looked up {2 * n} keys in {r.duration_ns / 1e6:.1f} ms: found {found}, "
            f"missing {missing}, checksum 0x{checksum:016x}")
        say(f"Python: expected found {n}, missing {n}, checksum 0x{expect_sum:016x} -> "
            f"{'match' if (found, missing, checksum) == (n, n, expect_sum) else 'MISMATCH'}")
        res.update(python_built=n, bpf_found=found, bpf_missing=missing,
                   bpf_checksum=checksum, python_checksum=expect_sum)
    res["ok"] = (res["python_walked"] == n and res["python_good"] == n and res["python_complete"]
                 and found == n and missing == n and checksum == expect_sum)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", "--backend", default="auto", choices=["kernel", "vm", "auto"])
    ap.add_argument("-n", type=int, default=100_000, help="elements per table (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        res = run(a.backend, a.n, a.seed)
    except (BPFError, RuntimeError, ValueError) as e:
        print(f"htab: error: {e}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(res))
    print("OK" if res["ok"] else "FAILED")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
