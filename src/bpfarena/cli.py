"""The `bpfarena` command: cc, inspect, run, features, demo, bench."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import BPFError


def _cmd_cc(a: argparse.Namespace) -> int:
    from .cc import compile as cc
    out = cc(a.source, output=a.output, extra_flags=a.cflag or [])
    print(out)
    return 0


def _cmd_features(a: argparse.Namespace) -> int:
    from .kernel.features import features, why
    feats = features()
    width = max(len(k) for k in feats)
    for k, v in feats.items():
        reason = why(k) if v is False else None
        text = "yes" if v is True else "no" if v is False else v
        print(f"{k:<{width}}  {text}" + (f"  ({reason})" if reason else ""))
    return 0


def _cmd_inspect(a: argparse.Namespace) -> int:
    from .isa.disasm import disassemble
    from .obj import ObjectSpec
    spec = ObjectSpec.from_file(a.object)
    for name, m in spec.maps.items():
        print(f"map {name}: type={m.type} key={m.key_size} value={m.value_size} "
              f"max_entries={m.max_entries} flags=0x{m.flags:x} map_extra=0x{m.map_extra:x}")
    if spec.arena_vars:
        print(f"arena globals ({len(spec.arena_image)} bytes): {', '.join(spec.arena_vars)}")
    for name, p in spec.programs.items():
        print(f"program {name}: section={p.section} type={p.prog_type} sleepable={p.sleepable} "
              f"insns={len(p.insns)}")
        if a.disasm:
            relocs = {r.insn_index: r for r in p.relocations}
            lines = disassemble(p.insns)
            for line in lines:
                idx = int(line.split(":", 1)[0])
                r = relocs.get(idx)
                note = "" if r is None else f"  ; {r.kind.value} {r.target}" + (
                    f"+{r.offset}" if r.kind.value in ("arena", "map_value") else "")
                print("    " + line + note)
    return 0


def _cmd_run(a: argparse.Namespace) -> int:
    from .loader import load
    try:
        ctx = bytes.fromhex(a.ctx) if a.ctx else b""
    except ValueError:
        raise SystemExit(f"bpfarena: error: --ctx must be hex bytes, got {a.ctx!r}") from None
    with load(a.object, backend=a.backend) as obj:
        names = a.program or list(obj.programs)
        unknown = [n for n in names if n not in obj.programs]
        if unknown:
            raise SystemExit(f"bpfarena: error: no program named {', '.join(map(repr, unknown))} "
                             f"in {a.object}; it has {', '.join(sorted(obj.programs)) or 'none'}")
        for n in names:
            r = obj.programs[n].run(ctx=ctx)
            print(f"{n}: retval={r.retval} duration_ns={r.duration_ns}")
            if r.output:
                print(r.output, end="" if r.output.endswith("\n") else "\n")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(backend=a.backend)


def _cmd_bench(a: argparse.Namespace) -> int:
    from .bench import run_bench
    return run_bench(quick=a.quick, output=a.output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bpfarena", description="BPF arenas from Python")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("cc", help="compile BPF C with clang-19 and bpfarena's headers")
    s.add_argument("source")
    s.add_argument("-o", "--output")
    s.add_argument("--cflag", action="append", help="extra clang flag (repeatable)")
    s.set_defaults(func=_cmd_cc)
    s = sub.add_parser("features", help="what the running kernel supports (real probes)")
    s.set_defaults(func=_cmd_features)
    s = sub.add_parser("inspect", help="show an object's maps, programs and arena globals")
    s.add_argument("object")
    s.add_argument("-d", "--disasm", action="store_true", help="disassemble programs")
    s.set_defaults(func=_cmd_inspect)
    s = sub.add_parser("run", help="load an object and run its programs")
    s.add_argument("object")
    s.add_argument("-p", "--program", action="append")
    s.add_argument("--ctx", help="context bytes as hex")
    s.add_argument("-b", "--backend", default="auto", choices=["kernel", "vm", "auto"])
    s.set_defaults(func=_cmd_run)
    s = sub.add_parser("demo", help="show what bpfarena does, end to end")
    s.add_argument("-b", "--backend", default="auto", choices=["kernel", "vm", "auto"])
    s.set_defaults(func=_cmd_demo)
    s = sub.add_parser("bench", help="benchmarks, kernel and VM side by side")
    s.add_argument("--quick", action="store_true")
    s.add_argument("-o", "--output", help="write results (markdown) here")
    s.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BPFError as e:
        print(f"bpfarena: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"bpfarena: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bpfarena inspect -d x.o | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (let interpreter exit flush quietly)
        return 0
