"""Object features the kernel's arena selftests (arena_htab, arena_list, arena_atomics) rely on,
on our own programs (tests/progs/compat_*.bpf.c), on every back end.

The selftest objects themselves are checked outside this repository (docs/compat.md says how to
run that check locally); these tests keep the features they need working here:
- the *_asm flavour: empty __arena, arena pointers in plain .bss statics, addr_space_cast as raw
  bytes, weak global subprograms with "arg:arena" arguments, an arena without map_extra, and a
  user-space write at the start of the arena globals area before the first run;
- __ulong(map_extra, 1 << 44), initialised arena globals whose address lands in a .bss pointer,
  a section-forced .data flag, and may_goto loops (mnemonic and raw opcode 0xe5);
- raw_tp programs run by test-run and gated on the caller's pid, __sync atomics on arena
  globals and the stack, and load-acquire / store-release as raw instructions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bpfarena

PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def asm_obj(build_dir: Path) -> Path:
    from bpfarena.cc import compile as cc

    return Path(cc(PROGS / "compat_asm.bpf.c", output_dir=build_dir,
                   extra_flags=["-DBPFARENA_FORCE_ASM"]))


def _chain(arena, head: int) -> list[int]:
    """Follow `next` (user-form pointers, 0 at the end) from `head`; values in list order."""
    out, seen = [], set()
    while head:
        assert arena.contains(head, 16), f"next pointer 0x{head:x} is outside the arena"
        assert head not in seen, "the chain loops"
        seen.add(head)
        out.append(arena.read_u64(head + 8))
        head = arena.read_u64(head)
    return out


def test_asm_flavour(backend, asm_obj):
    with bpfarena.load(asm_obj, backend=backend) as obj:
        arena = obj.arena
        assert arena.max_pages == 32
        # in the asm flavour the allocator's state is ordinary .bss, not arena globals
        assert list(arena.globals) == ["first_word"]
        assert "slot_ptrs" in obj.globals and "head_for_user" in obj.globals
        # the selftest writes through the arena's initial area before running: that is where
        # the arena globals start, so the program must read the value back there
        area = arena.globals.address("first_word")
        assert arena.offset(area) == 0
        arena.write_u32(area, 0x55AA)
        nodes = obj.globals["nodes"]
        assert obj.programs["build"].run().retval == 0
        assert obj.globals["seen_first"] == 0x55AA
        vals = _chain(arena, obj.globals["head_for_user"])
        assert vals == list(range(nodes - 1, -1, -1))
        assert obj.globals["chain_sum"] == sum(vals)
        # each slot got its own page, and the .bss copies are user-form pointers into the arena
        pages = obj.globals["slot_ptrs"]
        assert len(set(pages)) == 4
        for p in pages:
            assert p % 4096 == 0 and arena.contains(p)
            assert p >> 32 == arena.user_vm_start >> 32
        assert arena.resident_pages() == 1 + 4


@pytest.mark.parametrize("cnt", [1, 1000])
def test_list_flavour(backend, bpf_obj, cnt):
    with bpfarena.load(bpf_obj("compat_list.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        assert arena.user_vm_start == 1 << 44
        assert arena.globals["arena_count"] == 1
        assert obj.globals["compat_skip"] is False
        obj.globals["cnt"] = cnt
        assert obj.programs["push_all"].run().retval == 0
        expected = cnt * (cnt - 1) // 2
        head = obj.globals["list_head"]
        assert head == arena.globals.address("list_root")
        vals = []
        node = arena.read_u64(head)
        while node:
            vals.append(arena.read_u64(node + 8))
            node = arena.read_u64(node)
            assert len(vals) <= cnt
        assert vals == list(range(cnt - 1, -1, -1))
        assert arena.globals["arena_total"] == expected
        assert arena.globals["arena_count"] == cnt + 1
        assert obj.globals["pages_taken"] == -(-cnt // 128)

        assert obj.programs["pop_all"].run().retval == 0
        assert arena.read_u64(head) == 0
        assert obj.globals["popped_sum"] == expected
        assert arena.globals["arena_total"] == expected


ATOMIC_RESULTS = {
    "fetch_ops": dict(a64=15, a64_old=10, a32=7, a32_old=10, s64v=-2, s64_old=1,
                      stack_old=5, stack_copy=9, steps=2),
    "bit_ops": dict(m64=0x00F0 << 32, m32=0x0FFF, cx64=8, cx64_fail=7, cx64_ok=7, xc32=4,
                    xc32_old=3),
    "acquire_release": dict(acq16_dst=0xBEEF, acq64_dst=0x0123456789ABCDEF, rel8_dst=0x5A,
                            rel32_dst=0x76543210),
}


def test_atomics_flavour(backend, bpf_obj):
    with bpfarena.load(bpf_obj("compat_atomics.bpf.c"), backend=backend) as obj:
        g = obj.arena.globals
        before = {n: g[n] for vals in ATOMIC_RESULTS.values() for n in vals}
        # another pid: every program returns at once and changes nothing
        obj.globals["pid"] = os.getpid() + 1
        for prog in ATOMIC_RESULTS:
            assert obj.programs[prog].run().retval == 0
        assert {n: g[n] for n in before} == before
        assert obj.globals["ran_checks"] is False

        obj.globals["pid"] = os.getpid()
        for prog, values in ATOMIC_RESULTS.items():
            assert obj.programs[prog].run().retval == 0, prog
            assert {n: g[n] for n in values} == values, prog
        assert obj.globals["ran_checks"] is True
