"""The VM's runtime: load-time checks, memory safety, budget, calls, helpers, printk and maps.

Where the kernel has an answer (map semantics, helper results, calls) the same ObjectSpec runs on
the `backend` fixture; the VM-only behaviour (MemoryFault, BudgetExceeded, InvalidInstruction,
NotSupportedError) is what the VM promises instead of a verifier.
"""

from __future__ import annotations

import errno

import pytest

import bpfarena
from bpfarena.errors import (
    BudgetExceeded,
    InvalidInstruction,
    MapError,
    MemoryFault,
    NotSupportedError,
    VMError,
)
from bpfarena.isa import asm
from bpfarena.isa.asm import R0, R1, R2, R3, R4, R6, R7, R10
from bpfarena.isa.insn import Instruction
from bpfarena.obj.spec import MapSpec, ObjectSpec, ProgramSpec, Relocation, RelocKind
from bpfarena.vm.loader import load_insns

PAGE_SIZE = 4096


def run_vm(insns, **kw):
    with load_insns(insns, **kw) as obj:
        return obj.programs["prog"].run()


def spec_with(insns, relocs=(), maps=()):
    spec = ObjectSpec(maps={m.name: m for m in maps})
    spec.programs["prog"] = ProgramSpec(name="prog", section="syscall", prog_type=31,
                                        sleepable=True, insns=list(insns),
                                        relocations=list(relocs))
    return spec


# --- load-time checks (not the verifier) ------------------------------------------------------
BAD = {
    "unknown opcode": [Instruction(0xFF), asm.exit_()],
    "bad register": [Instruction(0xB7, 11, 0, 0, 1), asm.exit_()],
    "write to r10": [asm.mov64(R10, 0), asm.exit_()],
    "jump out of range": [asm.ja(5), asm.exit_()],
    "jump into ld_imm64": [asm.ja(1), *asm.ld_imm64(R0, 1), asm.exit_()],
    "falls off the end": [asm.mov64(R0, 0)],
    "bad cast imm": [Instruction(0xBF, 1, 1, 1, 0x20001), asm.exit_()],
    "div by zero imm": [asm.mov64(R0, 1), asm.div64(R0, 0), asm.exit_()],
    "shift too far": [asm.mov64(R0, 1), asm.lsh32(R0, 32), asm.exit_()],
    "ld_imm64 cut short": [asm.mov64(R0, 0), asm.exit_(), Instruction(0x18)],
    "call target outside": [asm.call_local(10), asm.exit_()],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_programs_are_refused_at_load(name):
    insns = BAD[name]
    with pytest.raises(InvalidInstruction) as e:
        load_insns(insns, arena_pages=1)
    assert e.value.insn_index is not None
    assert 0 <= e.value.insn_index < len(insns) + 1


def test_cast_needs_an_arena():
    with pytest.raises(InvalidInstruction, match="without an arena"):
        load_insns([asm.cast_kern(R1, R1), asm.exit_()])


def test_unknown_helper_and_kfunc_are_named_at_load():
    with pytest.raises(NotSupportedError, match="tail_call"):
        load_insns([asm.call_helper(12), asm.exit_()])
    with pytest.raises(NotSupportedError, match="bpf_obj_new_impl"):
        load_insns([asm.call_kfunc(0), asm.exit_()],
                   relocations=[Relocation(0, RelocKind.KFUNC, "bpf_obj_new_impl")])


def test_weak_unknown_kfunc_fails_only_when_called():
    a = asm.Assembler()
    a.jeq(R1, 0, "skip")
    a.call_kfunc(0)
    a.label("skip")
    a.mov64(R0, 3)
    a.exit_()
    relocs = [Relocation(1, RelocKind.KFUNC, "bpf_nope", weak=True)]
    with load_insns(a.assemble(), relocations=relocs) as obj:
        assert obj.programs["prog"].run().retval == 3  # ctx is NULL: the call is skipped
        with pytest.raises(NotSupportedError, match="bpf_nope"):
            obj.programs["prog"].run(ctx=b"12345678")


# --- memory safety and budget ---------------------------------------------------------------------
def test_wild_pointer_is_a_memory_fault():
    insns = [*asm.ld_imm64(R1, 0x1234_5678_9ABC_DEF0), asm.ldx("dw", R0, R1, 0), asm.exit_()]
    with pytest.raises(MemoryFault) as e:
        run_vm(insns)
    assert e.value.insn_index == 2
    assert e.value.address == 0x1234_5678_9ABC_DEF0
    assert e.value.size == 8


def test_stack_overrun_and_null_without_arena():
    with pytest.raises(MemoryFault) as e:
        run_vm([asm.mov64(R1, R10), asm.st("dw", R1, 0, 1), asm.exit_()])  # above frame 0
    assert "stack" in str(e.value)
    with pytest.raises(MemoryFault):
        run_vm([asm.mov64(R1, 0), asm.ldx("w", R0, R1, 0), asm.exit_()])  # no arena: NULL


def test_read_only_data_refuses_stores():
    ro = MapSpec(name=".rodata", type=2, key_size=4, value_size=8, max_entries=1,
                 section=".rodata", data=b"\x07" + bytes(7), readonly=True)
    insns = [*asm.ld_imm64(R1, 0), asm.ldx("dw", R0, R1, 0), asm.st("dw", R1, 0, 1), asm.exit_()]
    with pytest.raises(MemoryFault, match="read-only"):
        run_vm(insns, maps=[ro], relocations=[Relocation(0, RelocKind.MAP_VALUE, ".rodata")])


def test_infinite_loop_exhausts_the_budget():
    insns = [asm.mov64(R0, 0), asm.add64(R0, 1), asm.ja(-2), asm.exit_()]
    with load_insns(insns, budget=10_000) as obj:
        with pytest.raises(BudgetExceeded) as e:
            obj.programs["prog"].run()
        assert e.value.insn_index == 2
        with pytest.raises(BudgetExceeded):
            obj.programs["prog"].run(budget=100)


def test_instruction_count():
    a = asm.Assembler()
    a.mov64(R0, 0)
    a.mov64(R1, 10)
    a.label("top")
    a.add64(R0, R1)
    a.sub64(R1, 1)
    a.jne(R1, 0, "top")
    a.exit_()
    res = run_vm(a.assemble())
    assert res.retval == 55
    assert res.insns == 2 + 3 * 10 + 1


def test_may_goto_leaves_after_its_budget(backend):
    """x86-64's timed may_goto (Linux 6.15+): the count of 0xffff is refilled each time it runs
    out until ~250 ms have passed since the first refill; the may_goto that empties it falls
    through, the next one jumps. So a spinning loop gives up after a multiple of 0xffff steps."""
    a = asm.Assembler()
    a.mov64(R0, 0)
    a.label("top")
    a.may_goto("out")
    a.add64(R0, 1)
    a.ja("top")
    a.label("out")
    a.exit_()
    with bpfarena.load(spec_with(a.assemble()), backend=backend) as obj:
        res = obj.programs["prog"].run()
    assert res.retval % 0xFFFF == 0 and res.retval >= 2 * 0xFFFF


def test_may_goto_budget_is_per_frame(backend):
    """Each bpf-to-bpf frame starts with its own may_goto count: a callee's spinning loop gives
    up, and the caller's loop still runs its own 10 steps afterwards."""
    a = asm.Assembler()
    a.mov64(R6, 0)
    a.call_local("spin")
    a.label("top")
    a.may_goto("out")
    a.add64(R6, 1)
    a.jlt(R6, 10, "top")
    a.label("out")
    a.mov64(R0, R6)
    a.exit_()
    a.label("spin")
    a.may_goto("done")
    a.ja("spin")
    a.label("done")
    a.mov64(R0, 0)
    a.exit_()
    with bpfarena.load(spec_with(a.assemble()), backend=backend) as obj:
        assert obj.programs["prog"].run().retval == 10


def test_call_depth_is_limited():
    insns = [asm.call_local(-1), asm.exit_()]  # calls itself
    with pytest.raises(VMError, match="call depth"):
        run_vm([asm.call_local(1), asm.exit_(), *insns])


# --- calls, frames, helpers (kernel and VM) -----------------------------------------------------
def _callee_program():
    """main: r6 = 5; stack[-8] = 100; r0 = f(3, &stack[-8]) + r6 + stack[-8];
    f(a, p): its own stack[-8] = 7; *p += a; return a * 2 + its stack[-8]."""
    a = asm.Assembler()
    a.mov64(R6, 5)
    a.st("dw", R10, -8, 100)
    a.mov64(R1, 3)
    a.mov64(R2, R10)
    a.add64(R2, -8)
    a.call_local("f")
    a.add64(R0, R6)
    a.ldx("dw", R1, R10, -8)
    a.add64(R0, R1)
    a.exit_()
    a.label("f")
    a.mov64(R6, 1000)  # callee-saved in the caller: must not leak back
    a.st("dw", R10, -8, 7)
    a.ldx("dw", R3, R2, 0)
    a.add64(R3, R1)
    a.stx("dw", R2, R3, 0)
    a.mov64(R0, R1)
    a.mul64(R0, 2)
    a.ldx("dw", R4, R10, -8)
    a.add64(R0, R4)
    a.exit_()
    return a.assemble()


def test_bpf_to_bpf_calls_have_their_own_frames(backend):
    with bpfarena.load(spec_with(_callee_program()), backend=backend) as obj:
        assert obj.programs["prog"].run().retval == (6 + 7) + 5 + 103


def test_bpf_loop_with_a_callback():
    """bpf_loop(10, cb, &ctx, 0): cb(i, ctx) adds i to *ctx and stops after i == 6.

    VM only: the kernel wants BTF func_info for callbacks, which a hand-built spec lacks
    (tests/progs/ex_helpers.bpf.c runs bpf_loop on both back ends)."""
    a = asm.Assembler()
    a.st("dw", R10, -8, 0)
    a.mov64(R1, 10)
    a.emit(asm.ld_func(R2, 0))  # fixed below: the callback's offset
    a.mov64(R3, R10)
    a.add64(R3, -8)
    a.mov64(R4, 0)
    a.call_helper(181)
    a.ldx("dw", R1, R10, -8)
    a.lsh64(R0, 16)
    a.add64(R0, R1)
    a.exit_()
    a.label("cb")
    a.ldx("dw", R3, R2, 0)
    a.add64(R3, R1)
    a.stx("dw", R2, R3, 0)
    a.mov64(R0, 0)
    a.jne(R1, 6, "more")
    a.mov64(R0, 1)
    a.label("more")
    a.exit_()
    insns = a.assemble()
    cb = a.labels["cb"]
    insns[2] = insns[2].replace(imm=cb - 2 - 1)
    with bpfarena.load(spec_with(insns), backend="vm") as obj:
        r = obj.programs["prog"].run().retval
    assert r >> 16 == 7  # iterations run (the one returning 1 counts)
    assert r & 0xFFFF == sum(range(7))


def test_helpers_basic(backend):
    a = asm.Assembler()
    a.call_helper("get_smp_processor_id")
    a.mov64(R6, R0)
    a.call_helper("ktime_get_ns")
    a.mov64(R7, R0)
    a.call_helper("ktime_get_ns")
    a.sub64(R0, R7)
    a.mov64(R1, 1)
    a.jsge(R0, 0, "mono")  # time does not go backwards
    a.mov64(R1, 0)
    a.label("mono")
    a.mov64(R0, R1)
    a.exit_()
    with bpfarena.load(spec_with(a.assemble()), backend=backend) as obj:
        assert obj.programs["prog"].run().retval == 1


def _printk_prog(fmt: bytes, args: list[int]) -> list[Instruction]:
    """The format on the stack at fp-64, the string "hey" at fp-72 (pass -72 for a %s)."""
    a = asm.Assembler()
    for off in range(0, len(fmt), 8):
        a.emit(asm.ld_imm64(R1, int.from_bytes(fmt[off:off + 8].ljust(8, b"\0"), "little")))
        a.stx("dw", R10, R1, -64 + off)
    a.emit(asm.ld_imm64(R1, int.from_bytes(b"hey\0\0\0\0\0", "little")))
    a.stx("dw", R10, R1, -72)
    a.mov64(R1, R10)
    a.add64(R1, -64)
    a.mov64(R2, len(fmt))
    for reg, v in zip((R3, R4, asm.R5), args, strict=False):
        if v == -72:
            a.mov64(reg, R10)
            a.add64(reg, -72)
        else:
            a.mov64(reg, v)
    a.call_helper("trace_printk")
    a.exit_()
    return a.assemble()


def test_trace_printk_output():
    res = run_vm(_printk_prog(b"n=%d u=%u s=%s!\n\0", [-5, -5, -72]))
    assert res.output == "n=-5 u=4294967291 s=hey!\n"
    assert res.retval == len("n=-5 u=4294967291 s=hey!\n")
    # more conversions than the three arguments: -EINVAL and no output, as the kernel does
    res = run_vm(_printk_prog(b"%d %d %d %d\0", [1, 2, 3]))
    assert res.retval == (-errno.EINVAL) & 0xFFFFFFFF
    assert res.output == ""
    # a format that is not NUL-terminated within its size
    res = run_vm(_printk_prog(b"abcdefgh", []))
    assert res.retval == (-errno.EINVAL) & 0xFFFFFFFF


def test_printk_formats():
    from bpfarena.vm.helpers import format_printk
    from bpfarena.vm.memory import Memory
    m = Memory()
    assert format_printk(b"%lld %llu %llx", [(1 << 64) - 2, (1 << 64) - 2, 255], m) == \
        "-2 18446744073709551614 ff"
    assert format_printk(b"%5d|%-4x|%05u", [42, 10, 7], m) == "   42|a   |00007"
    assert format_printk(b"%c%c", [0x41, 0x142], m) == "AB"
    assert format_printk(b"%px", [0xdead], m) == "000000000000dead"
    with pytest.raises(ValueError):
        format_printk(b"%q", [1], m)


# --- maps -----------------------------------------------------------------------------------------
HASH = MapSpec(name="h", type=1, key_size=4, value_size=8, max_entries=2)
ARRAY = MapSpec(name="a", type=2, key_size=4, value_size=8, max_entries=4)


def _map_prog():
    """Updates h[1] = 11 (ANY), h[1] again with NOEXIST (-EEXIST), h[2] (EXIST: -ENOENT),
    h[2], h[3] (full: -E2BIG); a[9] (-E2BIG), a[0] NOEXIST (-EEXIST); delete a[0] (-EINVAL);
    lookups of h[1] and h[7]. Each result goes to stack slots that are returned as a sum code."""
    a = asm.Assembler()
    res = []

    def key(k):
        a.st("w", R10, -4, k)
        a.st("dw", R10, -16, k * 11)

    def upd(m, k, flags):
        key(k)
        a.emit(asm.ld_imm64(R1, 0))
        res.append((len(a) - 2, m))
        a.mov64(R2, R10)
        a.add64(R2, -4)
        a.mov64(R3, R10)
        a.add64(R3, -16)
        a.mov64(R4, flags)
        a.call_helper("map_update_elem")
        a.stx("w", R10, R0, -64 - 4 * len(calls))
        calls.append(0)

    calls: list[int] = []
    upd("h", 1, 0)
    upd("h", 1, 1)
    upd("h", 2, 2)
    upd("h", 2, 0)
    upd("h", 3, 0)
    upd("a", 9, 0)
    upd("a", 0, 1)
    key(0)
    a.emit(asm.ld_imm64(R1, 0))
    res.append((len(a) - 2, "a"))
    a.mov64(R2, R10)
    a.add64(R2, -4)
    a.call_helper("map_delete_elem")
    a.stx("w", R10, R0, -64 - 4 * len(calls))
    calls.append(0)
    key(1)
    a.emit(asm.ld_imm64(R1, 0))
    res.append((len(a) - 2, "h"))
    a.mov64(R2, R10)
    a.add64(R2, -4)
    a.call_helper("map_lookup_elem")
    a.mov64(R6, 0)
    a.jeq(R0, 0, "none")
    a.ldx("dw", R6, R0, 0)
    a.label("none")
    a.mov64(R0, R6)
    a.exit_()
    insns = a.assemble()
    relocs = [Relocation(i, RelocKind.MAP, m) for i, m in res]
    return insns, relocs, len(calls)


def test_map_helpers(backend):
    insns, relocs, _n = _map_prog()
    spec = spec_with(insns, relocs, [HASH, ARRAY])
    with bpfarena.load(spec, backend=backend) as obj:
        assert obj.programs["prog"].run().retval == 11
        h, arr = obj.maps["h"], obj.maps["a"]
        assert h[1] == (11).to_bytes(8, "little")
        assert h[2] == (22).to_bytes(8, "little")
        assert h.lookup(3) is None
        assert len(h) == 2
        assert arr[0] == bytes(8)
        assert len(list(arr.keys())) == 4
        with pytest.raises(MapError) as e:
            h.update(3, 33)
        assert e.value.errno == errno.E2BIG
        with pytest.raises(MapError) as e:
            h.update(1, 1, flags=1)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(MapError) as e:
            arr.delete(0)
        assert e.value.errno == errno.EINVAL
        assert h.delete(1) is True
        assert h.delete(1) is False
        h.update(3, 33)
        assert sorted(int.from_bytes(k, "little") for k in h.keys()) == [2, 3]


def test_map_helper_return_codes():
    insns, relocs, n = _map_prog()
    # the per-call return codes stay on the VM's stack after the run: read them there
    with load_insns(insns, maps=[HASH, ARRAY], relocations=relocs) as obj:
        prog = obj.programs["prog"]
        prog.run()
        stk = prog.machine.stack.buf
        top = len(stk)
        got = [int.from_bytes(stk[top - 64 - 4 * i:top - 60 - 4 * i], "little", signed=True)
               for i in range(n)]
    assert got == [0, -errno.EEXIST, -errno.ENOENT, 0, -errno.E2BIG, -errno.E2BIG, -errno.EEXIST,
                   -errno.EINVAL]


def test_hash_value_pointer_survives_replacement():
    """A preallocated hash replaces an element by taking a fresh one: an old value pointer
    still sees the old bytes (kernel hashtab semantics)."""
    from bpfarena.vm.maps import VMMap
    from bpfarena.vm.memory import Memory
    mem = Memory()
    m = VMMap(mem, 0, "h", 1, 4, 8, 4)
    m.update(1, 5)
    p = m.value_addr((1).to_bytes(4, "little"))
    m.update(1, 6)
    assert mem.load(p, 8) == 5
    assert m[1] == (6).to_bytes(8, "little")


def test_lru_hash_evicts_the_oldest():
    from bpfarena.vm.maps import VMMap
    from bpfarena.vm.memory import Memory
    m = VMMap(Memory(), 0, "l", 9, 4, 8, 2)
    m.update(1, 1)
    m.update(2, 2)
    m.value_addr((1).to_bytes(4, "little"))  # a lookup makes 1 recent
    m.update(3, 3)
    assert sorted(int.from_bytes(k, "little") for k in m.keys()) == [1, 3]


PACKET = bytes(range(14, 14 + 80))


@pytest.mark.parametrize("prog_type,data_off,end_off", [(3, 76, 80), (6, 0, 4)])
def test_ctx_packet_pointers_with_an_arena(prog_type, data_off, end_off):
    """skb->data / xdp->data load as 32-bit ctx fields but give 64-bit packet addresses (the
    kernel's ctx rewriting makes them PTR_TO_PACKET): with an arena in the object, accesses
    through them still reach the packet, not the arena."""
    insns = [asm.ldx("w", R2, R1, data_off), asm.ldx("w", R3, R1, end_off),
             asm.mov64(R4, R2), asm.add64(R4, 4), asm.jgt(R4, R3, 3),
             asm.ldx("w", R0, R2, 0), asm.st("w", R2, 0, 0x5EED), asm.exit_(),
             asm.mov64(R0, 1), asm.exit_()]
    with load_insns(insns, prog_type=prog_type, arena_pages=4) as obj:
        res = obj.programs["prog"].run(data=PACKET)
        assert res.retval == int.from_bytes(PACKET[:4], "little")
        assert res.data_out == (0x5EED).to_bytes(4, "little") + PACKET[4:]
        assert obj.arena.resident_pages() == 0


@pytest.mark.parametrize("prog_type", [1, 8])  # socket filter, cgroup_skb
def test_test_run_pulls_the_ethernet_header(prog_type):
    """Not tc: BPF_PROG_TEST_RUN leaves skb->data past the Ethernet header (len = size - 14)
    and hands the header back zeroed in data_out."""
    insns = [asm.ldx("w", R2, R1, 76), asm.ldx("w", R3, R1, 80), asm.mov64(R0, R3),
             asm.sub64(R0, R2), asm.ldx("w", R4, R1, 0), asm.lsh64(R4, 16), asm.or64(R0, R4),
             asm.exit_()]
    with load_insns(insns, prog_type=prog_type) as obj:
        res = obj.programs["prog"].run(data=PACKET)
    n = len(PACKET) - 14
    assert res.retval == (n << 16) | n
    assert res.data_out == bytes(14) + PACKET[14:]


def test_globals_and_context(backend):
    data = MapSpec(name=".data", type=2, key_size=4, value_size=8, max_entries=1,
                   section=".data", data=(41).to_bytes(8, "little"))
    insns = [*asm.ld_imm64(R1, 0), asm.ldx("dw", R0, R1, 0), asm.add64(R0, 1),
             asm.stx("dw", R1, R0, 0), asm.exit_()]
    spec = spec_with(insns, [Relocation(0, RelocKind.MAP_VALUE, ".data")], [data])
    with bpfarena.load(spec, backend=backend) as obj:
        assert obj.programs["prog"].run().retval == 42
        assert obj.maps[".data"][0] == (42).to_bytes(8, "little")
    ctx_prog = [asm.ldx("w", R0, R1, 4), asm.st("w", R1, 0, 9), asm.exit_()]
    with bpfarena.load(spec_with(ctx_prog), backend=backend) as obj:
        res = obj.programs["prog"].run(ctx=(1).to_bytes(4, "little") + (77).to_bytes(4, "little"))
        assert res.retval == 77
        assert res.ctx_out[:4] == (9).to_bytes(4, "little")


# --- loading compiled objects -----------------------------------------------------------------
def test_arena_globals_at_the_end_and_at_a_given_start(bpf_obj):
    want = 0x7F12_0000_0000
    path = bpf_obj("load_arena.bpf.c")
    var = bpfarena.ObjectSpec.from_file(str(path)).arena_vars["a_value"]
    with bpfarena.load(path, backend="vm", user_vm_start=want, arena_placement="end") as obj:
        ar = obj.arena
        assert ar.user_vm_start == want
        assert ar.globals_offset == ar.size - PAGE_SIZE  # the image is smaller than a page
        assert ar.globals.address("a_value") == want + ar.size - PAGE_SIZE + var.offset
        assert obj.programs["read_globals"].run().retval == 42  # relocations follow the image
        assert ar.globals["a_seen"] == 84
    with pytest.raises(ValueError):
        bpfarena.load(path, backend="vm", arena_placement="middle")


def test_translated_source_is_inspectable(bpf_obj):
    with bpfarena.load(bpf_obj("load_arena.bpf.c"), backend="vm") as obj:
        src = obj.programs["alloc"].source
        assert "def F0(" in src and "K0(r1, r2, r3, r4, r5)" in src  # the alloc kfunc, by number


def test_ctx_shorter_than_the_program_reads_is_refused(backend):
    prog = [asm.ldx("dw", R0, R1, 8), asm.exit_()]  # reaches ctx bytes 8..15
    with bpfarena.load(spec_with(prog), backend=backend) as obj:
        p = obj.programs["prog"]
        assert p.run(ctx=bytes(8) + (5).to_bytes(8, "little")).retval == 5
        for ctx in (b"", bytes(15), bytes(70000)):
            with pytest.raises(bpfarena.errors.BPFError):
                p.run(ctx=ctx)


def test_per_cpu_values_have_the_kernels_shape(backend):
    from bpfarena.vm.maps import possible_cpus
    pc = MapSpec(name="pc", type=6, key_size=4, value_size=8, max_entries=2)
    insns = [asm.st("w", R10, -4, 1), *asm.ld_imm64(R1, 0), asm.mov64(R2, R10),
             asm.add64(R2, -4), asm.call_helper("map_lookup_elem"), asm.jeq(R0, 0, 2),
             asm.mov64(R1, 9), asm.stx("dw", R0, R1, 0), asm.mov64(R0, 0), asm.exit_()]
    spec = spec_with(insns, [Relocation(1, RelocKind.MAP, "pc")], [pc])
    with bpfarena.load(spec, backend=backend) as obj:
        m = obj.maps["pc"]
        m.update(0, 3)
        assert m.lookup(0) == [(3).to_bytes(8, "little")] * possible_cpus()
        obj.programs["prog"].run()  # the program's CPU gets 9 in element 1
        v = m.lookup(1)
        assert len(v) == possible_cpus()
        assert sum(int.from_bytes(x, "little") for x in v) == 9


def test_the_arena_is_listed_among_the_maps_and_has_no_elements(backend):
    insns = [*asm.ld_imm64(R1, 0), asm.mov64(R0, 0), asm.exit_()]
    with bpfarena.load(_arena_spec(insns), backend=backend) as obj:
        m = obj.maps["arena"]
        assert m.type == 33 and m.max_entries == 2
        with pytest.raises(MapError) as e:
            m.lookup(b"")
        assert e.value.errno == errno.EINVAL


def _arena_spec(insns):
    spec = spec_with(insns, [Relocation(0, RelocKind.MAP, "arena")],
                     [MapSpec(name="arena", type=33, max_entries=2, flags=0x400)])
    spec.arena_map = "arena"
    return spec


def test_closed_collection_refuses_everything():
    data = MapSpec(name=".bss", type=2, key_size=4, value_size=8, max_entries=1, section=".bss",
                   data=bytes(8))
    obj = load_insns([asm.mov64(R0, 0), asm.exit_()], maps=[data], arena_pages=1)
    prog, m, ar = obj.programs["prog"], obj.maps[".bss"], obj.arena
    obj.close()
    obj.close()
    with pytest.raises(VMError):
        prog.run()
    with pytest.raises(MapError):
        m.lookup(0)
    with pytest.raises(bpfarena.errors.ArenaError):
        ar.read(ar.user_vm_start, 1)


def test_arena_beyond_the_user_address_space_is_refused():
    with pytest.raises(bpfarena.errors.ArenaError) as e:
        bpfarena.Arena(4, backend="vm", user_vm_start=1 << 47)
    assert e.value.errno == errno.EBUSY


def test_trace_vprintk_takes_an_argument_array():
    fmt = b"%d %s %llx %u %d\n\0"
    a = asm.Assembler()
    for off in range(0, len(fmt), 8):
        a.emit(asm.ld_imm64(R1, int.from_bytes(fmt[off:off + 8].ljust(8, b"\0"), "little")))
        a.stx("dw", R10, R1, -64 + off)
    a.emit(asm.ld_imm64(R1, int.from_bytes(b"str\0\0\0\0\0", "little")))
    a.stx("dw", R10, R1, -72)
    a.st("dw", R10, -112, -1)
    a.mov64(R1, R10)
    a.add64(R1, -72)
    a.stx("dw", R10, R1, -104)
    a.st("dw", R10, -96, 0xABC)
    a.st("dw", R10, -88, 7)
    a.st("dw", R10, -80, 8)
    a.mov64(R1, R10)
    a.add64(R1, -64)
    a.mov64(R2, len(fmt))
    a.mov64(R3, R10)
    a.add64(R3, -112)
    a.mov64(R4, 40)
    a.call_helper("trace_vprintk")
    a.exit_()
    res = run_vm(a.assemble())
    assert res.output == "-1 str abc 7 8\n"


def test_loop_back_to_a_function_start():
    a = asm.Assembler()
    a.mov64(R0, 0)
    a.call_local("f")
    a.exit_()
    a.label("f")
    a.add64(R0, 1)
    a.jlt(R0, 10, "f")  # a jump to the first instruction of a function
    a.exit_()
    b = asm.Assembler()
    b.label("top")
    b.add64(R0, 2)
    b.jlt(R0, 10, "top")
    b.exit_()
    assert run_vm(a.assemble()).retval == 10
    assert run_vm(b.assemble()).retval == 10


# --- no program, however wrong, escapes the error tree --------------------------------------------
_OPCODES = sorted({0x07, 0x0F, 0x17, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x47, 0x4F, 0x57, 0x5F, 0x67,
                   0x6F, 0x77, 0x7F, 0x87, 0x97, 0x9F, 0xA7, 0xAF, 0xB7, 0xBF, 0xC7, 0xCF, 0xD7,
                   0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x44, 0x4C, 0x54, 0x5C, 0x64,
                   0x6C, 0x74, 0x7C, 0x84, 0x94, 0x9C, 0xA4, 0xAC, 0xB4, 0xBC, 0xC4, 0xCC, 0xD4,
                   0xDC, 0x05, 0x06, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x45, 0x4D, 0x55, 0x5D,
                   0x65, 0x6D, 0x75, 0x7D, 0xA5, 0xAD, 0xB5, 0xBD, 0xC5, 0xCD, 0xD5, 0xDD, 0x16,
                   0x1E, 0x26, 0x56, 0xA6, 0xCE, 0x85, 0x95, 0xE5, 0x18, 0x61, 0x69, 0x71, 0x79,
                   0x81, 0x89, 0x91, 0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B, 0xC3, 0xDB,
                   0xD3, 0xCB, 0x00, 0xFF, 0x20})


def _insn_strategy():
    """Mostly well-formed instructions (so most programs load and run), some garbage."""
    from hypothesis import strategies as st

    @st.composite
    def insn(draw):
        op = draw(st.sampled_from(_OPCODES))
        dst, src = draw(st.integers(0, 9)), draw(st.integers(0, 10))
        off = draw(st.integers(-3, 3) | st.sampled_from([-8, -16, -512, 4096, 1, 8]))
        imm = draw(st.integers(-3, 64) | st.sampled_from(
            [1, 0x10000, 0xE1, 0xF1, 0x100, 0x110, 0x41, 181, 16, 32, -0x80000000, 0x7FFFFFFF]))
        if draw(st.integers(0, 30)) == 0:  # now and then a field the opcode does not allow
            return Instruction(op, draw(st.integers(0, 11)), draw(st.integers(0, 11)), off, imm)
        cls, code, isreg = op & 7, op & 0xF0, op & 0x08
        if cls in (4, 7):
            if isreg and not (op == 0xBF and off == 1):
                imm = 0
            if not isreg:
                src = 0
            if code not in (0x30, 0x90, 0xB0):
                off = 0
            elif code != 0xB0:
                off = off & 1
            if code == 0x80:
                src = imm = off = 0
        elif cls in (5, 6):
            if code in (0x00, 0xE0, 0x90):
                dst = src = 0
                imm = imm if op == 0x06 else 0
                off = 0 if op in (0x06, 0x95) else off
            elif code == 0x80:
                dst, off = 0, 0
                src = src % 3
            elif isreg:
                imm = 0
            else:
                src = 0
            if code not in (0x80, 0x90):
                off = abs(off) % 4  # mostly forward, inside the program
        elif cls == 1 or (cls == 3 and (op & 0xE0) == 0x60):
            imm = 0
        elif cls == 2:
            src = 0
        return Instruction(op, dst, src, off, imm)

    return insn()


def test_random_programs_only_raise_bpfarena_errors():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from bpfarena.errors import BPFError

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_insn_strategy(), min_size=1, max_size=24), st.binary(max_size=24))
    def check(insns, ctx):
        try:
            with load_insns([*insns, asm.exit_()], arena_pages=2, budget=20_000) as obj:
                obj.arena.write(obj.arena.user_vm_start, b"\1" * 64)
                obj.programs["prog"].run(ctx=ctx)
        except BPFError:
            pass  # refused at load, faulted, or ran out of budget: all typed

    check()


def test_names_from_the_object_never_become_code(capfd):
    evil = 'x=1;print("PWNED");y'
    insns = [asm.jeq(R1, 0, 1), asm.call_kfunc(0), asm.mov64(R0, 0), asm.exit_()]
    with load_insns(insns, relocations=[Relocation(1, RelocKind.KFUNC, evil, weak=True)]) as obj:
        assert evil not in obj.programs["prog"].source
        with pytest.raises(NotSupportedError):
            obj.programs["prog"].run(ctx=bytes(8))
    assert "PWNED" not in capfd.readouterr().out
