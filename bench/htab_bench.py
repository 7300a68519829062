"""The arena hash-table benchmark, kernel JIT vs VM: `python3 bench/htab_bench.py [--quick] [-o F]`.

The same as `python3 -m bpfarena bench`; the measuring code is bpfarena.bench (so the CLI has it),
the workload is bench/htab.bpf.c.
"""

from __future__ import annotations

import argparse
import sys

from bpfarena.bench import run_bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tiny smoke run")
    ap.add_argument("-o", "--output", help="write the markdown table into this file")
    a = ap.parse_args(argv)
    return run_bench(quick=a.quick, output=a.output)


if __name__ == "__main__":
    sys.exit(main())
