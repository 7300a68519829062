"""Random programs the verifier accepts, run in the kernel and in the VM: no difference allowed.

Each hypothesis example is a batch of programs loaded as one object (one arena, reset between
programs): loading an object costs far more than loading one more program into it. The number of
programs comes from BPFARENA_FUZZ_EXAMPLES (default 10,000, what CI runs); a longer run with the
plain seeded generator is `python3 tests/proggen.py --count 200000` (docs/benchmarks.md).

A difference is shrunk (statements and prepared pages dropped while it still differs) and
reported with the registers, the differing arena bytes and the disassembly.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).parent))
import proggen  # noqa: E402

N_PROGRAMS = int(os.environ.get("BPFARENA_FUZZ_EXAMPLES", "10000"))
BATCH = 20  # programs per example and per loaded object: 2 drawn choice by choice, 18 seeded
CFG = proggen.GenConfig()


def _report(d: proggen.Differ, bad: list[proggen.Mismatch]) -> str:
    m = bad[0]
    small = d.shrink(m.program)
    again = proggen.run_once(d, small)
    text = proggen.describe(small, *again) if again else m.describe()
    return (f"{len(bad)} of the batch differ between kernel and VM; the first, shrunk:\n{text}"
            f"\n--- original:\n{m.describe()}")


def test_kernel_and_vm_agree(kernel: str) -> None:
    """N_PROGRAMS programs (hypothesis-driven), each compared between kernel and VM."""
    d = proggen.Differ(CFG.max_pages)

    @settings(max_examples=max(1, -(-N_PROGRAMS // BATCH)), deadline=None,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],  # we shrink ourselves
              suppress_health_check=list(HealthCheck))
    @given(batch=proggen.batches(CFG, 2, BATCH - 2))
    def check(batch: list[proggen.GenProgram]) -> None:
        for i, p in enumerate(batch):
            p.name = f"p{i}"
        bad = d.check(batch)
        assert not bad, _report(d, bad)

    check()
    # hypothesis drops examples it cannot generate; make sure the programs really ran
    assert d.programs_run >= N_PROGRAMS, f"only {d.programs_run} programs ran"


def test_kernel_accepts_seeded_programs(kernel: str) -> None:
    """The generator's promise on its own (independent of the VM): the verifier accepts them."""
    import bpfarena

    progs = [proggen.seeded(s, CFG, f"s{s}") for s in range(300)]
    for i in range(0, len(progs), 50):
        with bpfarena.load(proggen.object_spec(progs[i:i + 50], CFG.max_pages),
                           backend="kernel") as obj:
            assert len(obj.programs) == 50
            for p in progs[i:i + 10]:
                out = proggen.run_one(obj, p, CFG.max_pages)
                assert out.error is None
                if _has_kfunc(p):
                    continue
                # nothing freed pages: the prepared ones and the result page are resident
                assert out.resident >= len(p.prep.pages) + 1
                # retval is the fold of the registers the epilogue stored in the result page
                regs = [int.from_bytes(out.data[p.prep.result_page * 4096 + 8 * r:][:8],
                                       "little") for r in range(10)]
                r0 = regs[0]
                for r in p_scalars(p):
                    if r not in (0, 1, 9):
                        r0 ^= regs[r]
                assert out.retval == (r0 ^ (r0 >> 32)) & 0xFFFFFFFF


def _has_kfunc(p: proggen.GenProgram) -> bool:
    return any(k == "kfunc" for _i, k, _t, _o in p.lower()[1])


def p_scalars(p: proggen.GenProgram) -> list[int]:
    """The scalar registers, read back from the epilogue's fold (xor into r0)."""
    return [src for code, dst, src, _o, _i in p.epilogue[0].insns
            if code == proggen.ALU64 | proggen.XOR | proggen.X and dst == 0 and src != 1]


def test_seeded_programs_agree(kernel: str) -> None:
    """A fixed set of seeds (the same every run), so a regression shows up deterministically."""
    d = proggen.Differ(CFG.max_pages)
    progs = [proggen.seeded(1_000_000 + s, CFG, f"q{s}") for s in range(200)]
    bad = []
    for i in range(0, len(progs), 50):
        bad += d.check(progs[i:i + 50])
    assert not bad, _report(d, bad)


def _opcodes(progs: list[proggen.GenProgram]) -> set[tuple[int, int]]:
    seen = set()
    for p in progs:
        for code, _d, src, off, imm in p.lower()[0]:
            seen.add((code, off if code & 7 in (4, 7) else (imm if code & 0xE0 == 0xC0 else src)))
    return seen


def test_generator_covers_the_isa() -> None:
    """Every feature the issue lists shows up within a few hundred programs."""
    P = proggen
    progs = [P.seeded(s) for s in range(400)]
    seen = _opcodes(progs)
    codes = {c for c, _ in seen}
    for cls in (P.ALU, P.ALU64):
        for op in P.BIN_OPS + (P.NEG, P.MOV, P.END):
            assert any(c & 0xF7 == cls | op for c in codes), (cls, op)
    assert (P.ALU64 | P.DIV | P.X, 1) in seen and (P.ALU | P.MOD | P.K, 1) in seen  # sdiv/smod
    assert (P.ALU64 | P.MOV | P.X, 32) in seen and (P.ALU | P.MOV | P.X, 8) in seen  # movsx
    assert (P.ALU64 | P.MOV | P.X, 1) in seen  # addr_space_cast
    assert P.ALU64 | P.END in codes  # bswap
    for cls in (P.JMP, P.JMP32):
        for op in P.COND_OPS:
            assert cls | op | P.K in codes and cls | op | P.X in codes, (cls, op)
    assert P.JMP32 | P.JA in codes and P.JMP | P.JA in codes  # gotol and ja
    for sz in (P.B, P.H, P.W, P.DW):
        assert P.LDX | P.MEM | sz in codes and P.STX | P.MEM | sz in codes
        assert P.ST | P.MEM | sz in codes
    for sz in (P.B, P.H, P.W):
        assert P.LDX | P.MEMSX | sz in codes
    for op in (P.ADD, P.OR, P.AND, P.XOR, P.ADD | P.A_FETCH, P.A_XCHG, P.A_CMPXCHG,
               P.A_LOAD_ACQ, P.A_STORE_REL):
        assert (P.STX | P.ATOMIC | P.DW, op) in seen and (P.STX | P.ATOMIC | P.W, op) in seen
    kfuncs = {t for p in progs for _i, k, t, _o in p.lower()[1] if k == "kfunc"}
    assert kfuncs == {"bpf_arena_alloc_pages", "bpf_arena_free_pages", "bpf_arena_reserve_pages"}
    sizes = [p.n_slots() for p in progs]
    assert max(sizes) < 4096 and sum(sizes) / len(sizes) < 250


def test_generator_never_emits_what_the_kernel_refuses() -> None:
    """Static rules the verifier applies: checked over many programs without a kernel."""
    P = proggen
    rng = random.Random(7)
    for _ in range(300):
        p = P.generate(rng)
        raw, _rel = p.lower()
        for i, (code, dst, _src, off, imm) in enumerate(raw):
            cls = code & 7
            if cls in (P.ALU, P.ALU64) and code & 0x08 == P.K:
                op = code & 0xF0
                if op in (P.DIV, P.MOD):
                    assert imm != 0, (i, raw[i])
                if op in (P.LSH, P.RSH, P.ARSH):
                    assert 0 <= imm < (64 if cls == P.ALU64 else 32), (i, raw[i])
            if code & 0xE7 == P.STX | P.ATOMIC and imm not in (P.A_LOAD_ACQ, P.A_STORE_REL):
                assert code & 0x18 in (P.W, P.DW)
                if dst != P.FP:  # arena: aligned, and no fetch-and/or/xor (x86 JIT)
                    assert imm not in (P.OR | P.A_FETCH, P.AND | P.A_FETCH, P.XOR | P.A_FETCH)
                    assert (P.ALU64 | P.AND | P.K, dst, 0, 0, -8) in raw[i - 3:i]
                    assert off % (8 if code & 0x18 == P.DW else 4) == 0
            if cls in (P.JMP, P.JMP32) and code & 0xF0 not in (P.CALL, P.EXIT):
                assert (imm if code == P.JMP32 | P.JA else off) >= 0  # forward only
        assert raw[-1] == (P.JMP | P.EXIT, 0, 0, 0, 0)


def test_hypothesis_strategy_builds_specs() -> None:
    @settings(max_examples=20, deadline=None, database=None)
    @given(proggen.programs(proggen.GenConfig(max_body=10)))
    def check(p: proggen.GenProgram) -> None:
        spec = proggen.object_spec([p])
        ps = spec.programs[p.name]
        assert ps.prog_type == 31 and ps.sleepable and ps.section == "syscall"
        assert spec.arena is not None and spec.arena.flags == 0x400
        assert len(ps.insns) == p.n_slots()

    check()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_harness_reports_a_difference(kernel: str) -> None:
    """The comparison itself: a page written differently before the run is reported."""
    import dataclasses

    import bpfarena

    p = proggen.seeded(3, CFG, "d0")
    spare = next(i for i in range(p.npages)
                 if i not in p.prep.pages and i != p.prep.result_page)
    q = dataclasses.replace(p, prep=proggen.ArenaPrep({**p.prep.pages, spare: b"\x01" * 4096},
                                                      p.prep.result_page))
    with bpfarena.load(proggen.object_spec([p], CFG.max_pages), backend="kernel") as obj:
        a = proggen.run_one(obj, p, CFG.max_pages)
        b = proggen.run_one(obj, q, CFG.max_pages)
        assert not proggen.same(a, b, p)
        text = proggen.describe(p, a, b, obj.arena.user_vm_start)
    assert f"page {spare} " in text and "exit" in text


def test_shrink_keeps_what_makes_the_difference() -> None:
    """Delta debugging on a stand-in oracle: 'differs' while one marked statement is present."""
    P = proggen
    p = P.seeded(42)
    marked = next(s for s in P.stmt_paths(p.body) if len(s) == 1 and
                  isinstance(p.body[s[0]], P.Snippet))
    target = p.body[marked[0]].insns

    class Fake(P.Differ):
        def differs(self, q: P.GenProgram) -> bool:
            return target in [s.insns for s in q.body if isinstance(s, P.Snippet)]

    small = Fake().shrink(p, budget=10_000)
    assert [s.insns for s in small.body] == [target]
    assert not small.prep.pages
