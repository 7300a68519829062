"""The contracts the kernel's arena selftests state (arena_htab, arena_list, arena_atomics), on
our own programs built with our headers, checked from Python on every back end."""

from __future__ import annotations

from pathlib import Path

import pytest

import bpfarena
from bpfarena.ds import ArenaHashTable, ArenaList


def test_arena_htab(backend, bpf_obj):
    with bpfarena.load(bpf_obj("arena_htab.bpf.c"), backend=backend) as obj:
        assert obj.arena.max_pages == 100
        # the selftest faults page 0 in from user space before running; do the same
        obj.arena.write(obj.arena.user_vm_start + 0x800, b"\xaa\x55")
        res = obj.programs["arena_htab_build"].run()
        assert res.retval == 0, f"build failed: build_error={obj.globals['build_error']}"
        ptr = obj.globals["htab_for_user"]
        assert ptr != 0
        assert obj.arena.contains(ptr)
        table = ArenaHashTable(obj.arena, ptr)
        assert table.n_buckets == 1024
        assert table.buckets != 0
        for i in (0, 4, 8, 12):
            assert table.lookup(i) == i
        d = table.to_dict()
        assert d == {i: i for i in range(1000)}
        # the replaced elements are gone: exactly one element per key
        assert len(table) == 1000
        # the second round freed every first-round element and their pages went back. Kept:
        # the globals page, 2 bucket pages, the page holding the table struct, the page that was
        # current across the rounds and 8 pages of new elements (127 per page). Without frees it
        # would be 1 + 2 + 16.
        assert obj.arena.resident_pages() <= 1 + 2 + 10


@pytest.mark.parametrize("cnt", [1, 1000])
def test_arena_list(backend, bpf_obj, cnt):
    with bpfarena.load(bpf_obj("arena_list.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        assert arena.user_vm_start == 1 << 32
        assert arena.globals["test_val"] == 1
        obj.globals["cnt"] = cnt
        assert obj.programs["list_add"].run().retval == 0
        expected = cnt * (cnt - 1) // 2
        lst = ArenaList(arena, arena.globals.address("global_head"))
        lst.check_links()
        vals = lst.values()
        assert len(vals) == cnt
        assert sum(vals) == expected
        assert vals == list(range(cnt - 1, -1, -1))  # add_head: newest first
        assert arena.globals["arena_sum"] == expected
        assert obj.globals["list_sum"] == expected
        assert arena.globals["test_val"] == cnt + 1

        assert obj.programs["list_del"].run().retval == 0
        assert sum(lst.values()) == 0
        assert len(lst) == 0
        assert obj.globals["list_sum"] == expected
        assert arena.globals["arena_sum"] == expected


ATOMICS = {
    "add": {"add64_value": 3, "add32_value": 3, "add_noreturn_value": 3},
    "sub": {"sub64_value": -1, "sub32_value": -1, "sub_noreturn_value": -1},
    "and": {"and64_value": 0x010 << 32, "and32_value": 0x010},
    "or": {"or64_value": 0x111 << 32, "or32_value": 0x111},
    "xor": {"xor64_value": 0x101 << 32, "xor32_value": 0x101},
    "cmpxchg": {"cmpxchg64_value": 2, "cmpxchg32_value": 2},
    "xchg": {"xchg64_value": 2, "xchg32_value": 2},
}
ATOMIC_RESULTS = {
    "add": {"add64_result": 1, "add32_result": 1, "add_stack_result": 1,
            "add_stack_value_copy": 3},
    "sub": {"sub64_result": 1, "sub32_result": 1},
    "cmpxchg": {"cmpxchg64_result_fail": 1, "cmpxchg64_result_succeed": 1,
                "cmpxchg32_result_fail": 1, "cmpxchg32_result_succeed": 1},
    "xchg": {"xchg64_result": 1, "xchg32_result": 1},
}
ATOMIC_START = {
    "add64_value": 1, "sub64_value": 1, "and64_value": 0x110 << 32, "or32_value": 0x110,
    "cmpxchg64_value": 1, "xchg32_value": 1,
}


@pytest.mark.parametrize("prog", sorted(ATOMICS))
def test_arena_atomics(backend, bpf_obj, prog):
    with bpfarena.load(bpf_obj("arena_atomics.bpf.c"), backend=backend) as obj:
        ag = obj.arena.globals
        assert obj.arena.max_pages == 10
        for name, v in ATOMIC_START.items():
            assert ag[name] == v, name
        assert obj.programs[prog].run().retval == 0
        got = {n: ag[n] for n in ATOMICS[prog]}
        assert got == ATOMICS[prog]
        got = {n: obj.globals[n] for n in ATOMIC_RESULTS.get(prog, {})}
        assert got == ATOMIC_RESULTS.get(prog, {})
        # the other programs' values are untouched
        for other, values in ATOMICS.items():
            if other != prog:
                for n in values:
                    assert ag[n] != values[n] or n.endswith("noreturn_value") is False, n


def test_arena_atomics_all_in_sequence(backend, bpf_obj):
    """Every program on one loaded object, as the selftest runs its subtests."""
    with bpfarena.load(bpf_obj("arena_atomics.bpf.c"), backend=backend) as obj:
        for prog in sorted(ATOMICS):
            assert obj.programs[prog].run().retval == 0, prog
        for values in ATOMICS.values():
            for n, v in values.items():
                assert obj.arena.globals[n] == v, n


def test_force_asm_casts_run(backend, build_dir):
    """cast_kern/cast_user as inline asm (no clang address spaces) do what the casts mean."""
    from bpfarena.cc import compile as cc

    path = cc(Path(__file__).parent / "progs" / "arena_asm.bpf.c", output_dir=build_dir,
              extra_flags=["-DBPFARENA_FORCE_ASM"])
    with bpfarena.load(path, backend=backend) as obj:
        assert obj.programs["asm_casts"].run().retval == 0
        out = obj.globals["out"]
        assert obj.arena.contains(out)
        assert out >> 32 == obj.arena.user_vm_start >> 32  # user form
        assert obj.arena.read_u32(out) == 7
        assert obj.arena.read_u32(out + 4) == out & 0xFFFFFFFF
