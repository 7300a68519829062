"""The VM's arena: page placement against a reference model of the kernel's rules, faults inside
programs, casts, user-space touches, and the same sequences on the kernel (the oracle).

The reference model is written from the rules (ARENA_FACTS.md section 4), not from the range
tree: free pages are a bitmap; free runs are its maximal intervals; every run an operation
creates or changes gets a fresh stamp, in address order; allocation without a hint takes the
smallest run that fits, the most recently stamped among equals, from its start.
"""

from __future__ import annotations

import errno
import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import bpfarena
from bpfarena.arena import BPF_F_NO_USER_CONV, BPF_F_SEGV_ON_FAULT
from bpfarena.errors import ArenaError
from bpfarena.isa import asm
from bpfarena.isa.asm import R0, R1, R2, R3, R4, R5, R6, R7, R9, R10
from bpfarena.obj.spec import Relocation, RelocKind
from bpfarena.vm.arena import VMArena

PAGE = 4096
U32 = 0xFFFFFFFF


class Model:
    """The kernel's page rules, written plainly."""

    def __init__(self, pages: int, start: int) -> None:
        self.n = pages
        self.start = start
        self.free = [True] * pages
        self.stamp: dict[tuple[int, int], int] = {}
        self.clock = itertools.count()
        self._restamp()

    def runs(self) -> list[tuple[int, int]]:
        out, i = [], 0
        while i < self.n:
            if self.free[i]:
                j = i
                while j < self.n and self.free[j]:
                    j += 1
                out.append((i, j - i))
                i = j
            else:
                i += 1
        return out

    def _restamp(self) -> None:
        new = {}
        for r in self.runs():
            new[r] = self.stamp[r] if r in self.stamp else next(self.clock)
        self.stamp = new

    def pgoff(self, addr: int) -> int:
        return ((addr - self.start) & U32) >> 12

    def alloc(self, count: int, addr: int) -> int:
        if count <= 0 or count > self.n:
            return 0
        if addr:
            if addr % PAGE:
                return 0
            pg = self.pgoff(addr)
            if pg > self.n - count or not all(self.free[pg:pg + count]):
                return 0
        else:
            fits = [(size, -self.stamp[(s, size)], s) for s, size in self.runs() if size >= count]
            if not fits:
                return 0
            pg = min(fits)[2]
        for i in range(pg, pg + count):
            self.free[i] = False
        self._restamp()
        return (self.start & ~U32) + ((self.start + pg * PAGE) & U32)

    def free_pages(self, addr: int, count: int) -> None:
        if not count or not addr:
            return
        pg = self.pgoff(addr & U32 & ~(PAGE - 1))
        assert pg < self.n, "the model only frees inside the arena"
        end = min(self.n, pg + count)
        if all(self.free[pg:end]):
            return
        for i in range(pg, end):
            self.free[i] = True
        self._restamp()

    def reserve(self, addr: int, count: int) -> int:
        if not count or addr % PAGE:
            return 0
        pg = self.pgoff(addr)
        if pg + count > self.n:
            return -errno.EINVAL
        if not all(self.free[pg:pg + count]):
            return -errno.EBUSY
        for i in range(pg, pg + count):
            self.free[i] = False
        self._restamp()
        return 0

    def touch(self, pg: int) -> None:  # a user-space fault
        if self.free[pg]:
            self.free[pg] = False
            self._restamp()


N_PAGES = 24


class ArenaMachine(RuleBasedStateMachine):
    """Random alloc/free/reserve/touch sequences: VMArena and the model agree on every result,
    every free run and every page that exists."""

    def __init__(self) -> None:
        super().__init__()
        self.arena = VMArena(N_PAGES, user_vm_start=0x7F00_0000_0000 + 5 * PAGE)
        self.model = Model(N_PAGES, self.arena.user_vm_start)
        self.present = [False] * N_PAGES

    def teardown(self) -> None:
        self.arena.close()

    def _addr(self, pg: int) -> int:
        return self.arena.user_vm_start + pg * PAGE

    @rule(count=st.integers(-1, N_PAGES + 1))
    def alloc_anywhere(self, count: int) -> None:
        got = self.arena.alloc(count, 0, -1, 0)
        assert got == self.model.alloc(count, 0)
        self._mark(got, count)

    @rule(count=st.integers(0, 6), pg=st.integers(0, N_PAGES + 2), odd=st.booleans())
    def alloc_at(self, count: int, pg: int, odd: bool) -> None:
        addr = self._addr(pg) + (8 if odd else 0)
        got = self.arena.alloc(count, addr, -1, 0)
        assert got == self.model.alloc(count, addr)
        assert got in (0, addr)
        self._mark(got, count)

    def _mark(self, got: int, count: int) -> None:
        if got:
            pg = self.model.pgoff(got)
            for i in range(pg, pg + count):
                self.present[i] = True

    @rule(pg=st.integers(0, N_PAGES - 1), count=st.integers(0, 8), low32=st.booleans())
    def free(self, pg: int, count: int, low32: bool) -> None:
        addr = self._addr(pg) + 100  # rounded down to the page
        if low32:
            addr &= U32  # the kfunc only looks at the low 32 bits
        if count:
            self.arena.free(addr, count)
        self.model.free_pages(addr, count)
        for i in range(pg, min(N_PAGES, pg + count)):
            self.present[i] = False

    @rule(pg=st.integers(0, N_PAGES + 2), count=st.integers(0, 6), odd=st.booleans())
    def reserve(self, pg: int, count: int, odd: bool) -> None:
        addr = self._addr(pg) + (1 if odd else 0)
        got = self.arena._reserve_pages(addr, count)
        assert got == self.model.reserve(addr, count)

    @rule(pg=st.integers(0, N_PAGES - 1), raw=st.booleans())
    def user_touch(self, pg: int, raw: bool) -> None:
        if raw:  # through the zero-copy view: found by mincore before the next decision
            mv = self.arena.memoryview()
            mv[pg * PAGE + 7] = mv[pg * PAGE + 7]
            mv.release()
        else:
            self.arena.read(self._addr(pg), 1)
        self.model.touch(pg)
        self.present[pg] = True

    @invariant()
    def agree(self) -> None:
        self.arena.sync()
        assert self.arena.tree.runs() == self.model.runs()
        assert [bool(b) for b in self.arena.present] == self.present


TestArenaAgainstModel = ArenaMachine.TestCase
TestArenaAgainstModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])


# --- the same operations on the kernel ------------------------------------------------------------
def test_placement_matches_the_kernel(kernel):
    """Random sequences through the Arena API on both back ends at the same address: every
    result (address, or the errno) is the same."""
    from hypothesis import given

    ops = st.lists(st.tuples(st.sampled_from(["alloc", "hint", "free", "reserve", "touch"]),
                             st.integers(0, 15), st.integers(1, 4)), min_size=1, max_size=25)

    @settings(max_examples=25, deadline=None)
    @given(ops)
    def check(seq):
        start = 0x7E00_0000_0000 + 3 * PAGE
        results = {}
        for be in ("kernel", "vm"):
            out = []
            with bpfarena.Arena(16, backend=be, user_vm_start=start) as ar:
                for op, pg, cnt in seq:
                    addr = start + pg * PAGE
                    try:
                        if op == "alloc":
                            out.append(ar.alloc_pages(cnt) - start)
                        elif op == "hint":
                            out.append(ar.alloc_pages(cnt, addr=addr) - start)
                        elif op == "free":
                            ar.free_pages(addr, cnt)
                        elif op == "reserve":
                            ar.reserve_pages(addr, cnt)
                        else:
                            ar.write(addr, b"x")
                    except ArenaError as e:
                        out.append(("error", e.errno))
                if not any(op == "reserve" for op, _p, _c in seq):
                    # (the kernel back end counts reserved pages as resident)
                    out.append(ar.resident_pages())
            results[be] = out
        assert results["kernel"] == results["vm"], seq

    check()


# --- arena access from programs -----------------------------------------------------------------
def _load(insns, relocs, pages=8, flags=0, start=None):
    from bpfarena.vm.loader import load_insns
    return load_insns(insns, arena_pages=pages, arena_flags=flags, user_vm_start=start,
                      relocations=relocs)


def _alloc_prog(extra):
    """r6 = bpf_arena_alloc_pages(arena, NULL, 1, -1, 0); r7 = cast_kern(r6); then `extra`."""
    a = asm.Assembler()
    a.emit(asm.ld_imm64(R1, 0))
    a.emit([asm.mov64(R2, 0), asm.mov64(R3, 1), asm.mov64(R4, -1), asm.mov64(R5, 0),
            asm.call_kfunc(0), asm.mov64(R6, R0), asm.cast_kern(R7, R0)])
    n = len(a.assemble())
    relocs = [Relocation(0, RelocKind.MAP, "arena"),
              Relocation(n - 3, RelocKind.KFUNC, "bpf_arena_alloc_pages")]
    extra(a)
    return a.assemble(), relocs


def test_faults_inside_programs_are_survived():
    def body(a):
        a.emit([asm.st("dw", R7, 0, 42),
                asm.st("dw", R7, PAGE, 99),  # the next page does not exist: skipped
                asm.ldx("dw", R0, R7, PAGE),  # ... and reads as 0
                asm.ldx("dw", R1, R7, 0), asm.add64(R0, R1),
                asm.mov64(R2, 5), asm.atomic_add("dw", R7, R2, PAGE),  # skipped
                asm.mov64(R3, 7), asm.xchg("dw", R7, R3, PAGE),  # skipped: r3 keeps 7
                asm.add64(R0, R3),
                asm.ldx("dw", R1, R7, -8),  # just below the page: unallocated
                asm.add64(R0, R1), asm.exit_()])
    with _load(*_alloc_prog(body)) as obj:
        prog = obj.programs["prog"]
        res = prog.run()
        assert res.retval == 42 + 7
        ar = obj.arena
        assert ar.resident_pages() == 1
        assert ar.read_u64(ar.user_vm_start) == 42
        kinds = [k for k, _a in prog.last_faults]
        assert kinds == ["WRITE", "READ", "WRITE", "WRITE", "READ"]
        assert all(a >> 32 == ar.user_vm_start >> 32 for _k, a in prog.last_faults)


def test_guard_area_and_32_bit_wrap():
    """An arena at the very top of a 4 GiB window: pointer + off past 4 GiB is the guard; the
    pointer arithmetic itself wraps in 32 bits."""
    start = 0x7F00_0000_0000 + (1 << 32) - 2 * PAGE
    a = asm.Assembler()
    a.emit(asm.ld_imm64(R9, 0))
    a.emit([asm.cast_kern(R9, R9),
            asm.st("dw", R9, PAGE, 11),  # the last page
            asm.ldx("dw", R0, R9, PAGE),
            asm.ldx("dw", R1, R9, 2 * PAGE),  # past 4 GiB: the guard area reads 0
            asm.add64(R0, R1),
            asm.st("dw", R9, 2 * PAGE, 5),  # and swallows stores
            asm.exit_()])
    with _load(a.assemble(), [Relocation(0, RelocKind.ARENA, "arena", 0)], pages=2,
               start=start) as obj:
        obj.arena.write(start, bytes(2 * PAGE))
        assert obj.programs["prog"].run().retval == 11
        assert obj.programs["prog"].last_faults[0][0] == "READ"


@pytest.mark.parametrize("flags", [0, BPF_F_NO_USER_CONV])
def test_casts(flags):
    a = asm.Assembler()
    a.emit(asm.ld_imm64(R9, 0))
    a.emit([asm.cast_kern(R1, R9),  # keeps the low 32 bits
            asm.cast_user(R2, R1),  # back to the user form (or 32 bits with NO_USER_CONV)
            asm.mov64(R3, 0), asm.cast_user(R3, R3)])  # NULL stays NULL
    a.emit(asm.ld_imm64(R4, 0x1234_0000_0000))
    a.emit([asm.cast_user(R4, R4),  # low half 0: NULL too
            asm.stx("dw", R1, R1, 0), asm.stx("dw", R1, R2, 8), asm.stx("dw", R1, R3, 16),
            asm.stx("dw", R1, R4, 24), asm.mov64(R0, 0), asm.exit_()])
    with _load(a.assemble(), [Relocation(0, RelocKind.ARENA, "arena", 0x40)], flags=flags) as obj:
        ar = obj.arena
        ar.write(ar.user_vm_start, bytes(PAGE))
        obj.programs["prog"].run()
        p = ar.user_vm_start + 0x40
        assert ar.read_u64(p) == p & U32
        assert ar.read_u64(p + 8) == (p & U32 if flags else p)
        assert ar.read_u64(p + 16) == 0
        assert ar.read_u64(p + 24) == 0


def test_alloc_free_reserve_kfuncs_from_a_program():
    """The kfuncs' return values: NULL on failure, the user address, 0/-EINVAL/-EBUSY."""
    def body(a):
        a.emit([asm.stx("dw", R7, R6, 0)])  # page 0: its own user address
        # reserve page 3 (an offset the program computes), then reserve it again: -EBUSY
        a.emit(asm.ld_imm64(R1, 0))
        a.emit([asm.mov64(R2, R6), asm.add64(R2, 3 * PAGE), asm.mov64(R3, 1), asm.call_kfunc(0),
                asm.stx("dw", R7, R0, 8)])
        a.emit(asm.ld_imm64(R1, 0))
        a.emit([asm.mov64(R2, R6), asm.add64(R2, 3 * PAGE), asm.mov64(R3, 1), asm.call_kfunc(0),
                asm.stx("dw", R7, R0, 16)])
        a.emit(asm.ld_imm64(R1, 0))  # alloc at the reserved page: NULL
        a.emit([asm.mov64(R2, R6), asm.add64(R2, 3 * PAGE), asm.mov64(R3, 1), asm.mov64(R4, -1),
                asm.mov64(R5, 0), asm.call_kfunc(0), asm.stx("dw", R7, R0, 24)])
        a.emit(asm.ld_imm64(R1, 0))  # free page 0 (through its 32-bit form), then read it
        a.emit([asm.mov64(R2, R7), asm.mov64(R3, 1), asm.call_kfunc(0),
                asm.ldx("dw", R0, R7, 0), asm.exit_()])
    insns, relocs = _alloc_prog(body)
    kf = [i for i, x in enumerate(insns) if x.opcode == 0x85 and x.src == 2]
    maps = [i for i, x in enumerate(insns) if x.opcode == 0x18]
    names = ["bpf_arena_alloc_pages", "bpf_arena_reserve_pages", "bpf_arena_reserve_pages",
             "bpf_arena_alloc_pages", "bpf_arena_free_pages"]
    relocs = [Relocation(i, RelocKind.MAP, "arena") for i in maps] + [
        Relocation(i, RelocKind.KFUNC, n) for i, n in zip(kf, names, strict=True)]
    with _load(insns, relocs) as obj:
        ar = obj.arena
        mv = ar.memoryview()  # the program's stores are visible here, zero-copy
        assert obj.programs["prog"].run().retval == 0  # freed: reads back 0
        assert ar.resident_pages() == 0
        assert bytes(mv[:32]) == bytes(32)  # freed pages are zeroed for every mapping
        mv.release()
        with pytest.raises(ArenaError) as e:  # page 3 is still reserved
            ar.alloc_pages(1, addr=ar.user_vm_start + 3 * PAGE)
        assert e.value.errno == errno.ENOMEM


def test_program_results_before_free_are_visible_to_numpy():
    def body(a):
        a.emit([asm.mov64(R1, 0x55), asm.stx("b", R7, R1, 10), asm.mov64(R0, 0), asm.exit_()])
    with _load(*_alloc_prog(body)) as obj:
        obj.programs["prog"].run()
        arr = obj.arena.numpy("u1", count=16)
        assert arr[10] == 0x55
        assert obj.arena.resident_pages() == 1


def test_user_touch_through_numpy_allocates_like_a_fault():
    with bpfarena.Arena(8, backend="vm") as ar:
        arr = ar.numpy("u8")
        arr[(2 * PAGE) // 8] = 7  # page 2, touched without read()/write()
        assert ar.resident_pages() == 1
        # best fit now sees runs [0,1] and [3,7]: a 2-page allocation takes page 0
        assert ar.alloc_pages(2) == ar.user_vm_start
        del arr


def test_segv_on_fault_refuses_user_touches():
    with bpfarena.Arena(4, backend="vm", flags=BPF_F_SEGV_ON_FAULT) as ar:
        with pytest.raises(ArenaError) as e:
            ar.read(ar.user_vm_start, 8)
        assert e.value.errno == errno.EFAULT
        p = ar.alloc_pages(1)
        ar.write(p, b"ok")
        assert ar.read(p, 2) == b"ok"


def test_second_mapping_of_the_memfd_sees_the_same_bytes():
    import mmap
    import os
    with bpfarena.Arena(4, backend="vm") as ar:
        p = ar.alloc_pages(1, addr=ar.user_vm_start + PAGE)
        ar.write(p, b"shared")
        fd = os.dup(ar.fd)
        try:
            m = mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED)
            assert m[PAGE:PAGE + 6] == b"shared"
            ar.free_pages(p, 1)
            assert m[PAGE:PAGE + 6] == bytes(6)  # the free zeroed it for every mapping
            m.close()
        finally:
            os.close(fd)


def test_chosen_start_never_crosses_4gib():
    for pages in (1, 1000, 1 << 19, 1 << 20):
        with VMArena(pages) as ar:
            assert ar.user_vm_start % PAGE == 0
            assert ar.user_vm_start >> 32 == (ar.user_vm_end - 1) >> 32


def test_alu64_on_arena_pointers_is_32_bit(backend):
    """The verifier turns ALU64 arithmetic on an arena pointer into ALU32; a 64-bit shift count
    then reaches a 32-bit x86 shift, which masks it. Spilling the pointer keeps its type."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_vm_isa import ARENA_RELOC, make_spec, result_prologue, run_all, u64s

    a = asm.Assembler()
    result_prologue(a)  # r9 = the arena's first page, kernel form
    a.emit([asm.mov64(R1, R9), asm.add64(R1, 0x40),
            asm.mov64(R2, R1), asm.add64(R2, -0x80),  # wraps in 32 bits
            asm.mov64(R3, R1), asm.lsh64(R3, 33),  # shl r32, 33 -> by 1
            asm.stx("dw", R10, R1, -8), asm.ldx("dw", R4, R10, -8),  # spill and fill
            asm.sub64(R4, 0x100),
            asm.mov64(R5, R1), asm.mul64(R5, 0x10001),
            asm.stx("dw", R9, R2, 0), asm.stx("dw", R9, R3, 8), asm.stx("dw", R9, R4, 16),
            asm.stx("dw", R9, R5, 24), asm.mov64(R0, 0), asm.exit_()])
    start = 0x7D00_0000_0000 + 0x1000_0000
    got = run_all(make_spec({"p": (a.assemble(), [ARENA_RELOC])}, pages=4, map_extra=start),
                  backend, pages_to_fault=1, user_vm_start=start)
    p = (start & U32) + 0x40
    assert u64s(got["p"][1], 4) == [(p - 0x80) & U32, (p << 1) & U32, (p - 0x100) & U32,
                                    (p * 0x10001) & U32]
