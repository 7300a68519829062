"""The pure ISA package: encode/decode round trips over the whole validity table, validation,
the assembler's labels, the disassembler's kernel syntax, and cross-checks against clang-19."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfarena.errors import AssemblerError, BPFError, InvalidInstruction
from bpfarena.isa import (
    OPCODES,
    R0,
    R1,
    R2,
    R3,
    R4,
    R10,
    Assembler,
    AtomicOp,
    Helper,
    Instruction,
    Kind,
    Size,
    decode,
    disassemble,
    encode,
    format_insn,
    imm64,
    split_imm64,
    validate,
)
from bpfarena.isa import asm as A
from bpfarena.isa.helpers import HELPER_NAMES, helper_id, helper_name
from bpfarena.isa.insn import check_insn
from bpfarena.isa.opcodes import Span

CLANG = shutil.which("clang-19")

# -- strategies ----------------------------------------------------------------------------------


def _field(allowed) -> st.SearchStrategy[int]:
    if isinstance(allowed, Span):
        s = st.integers(allowed.lo, allowed.hi)
        return s.filter(lambda v: v not in allowed.exclude) if allowed.exclude else s
    return st.sampled_from(sorted(int(v) for v in allowed))


@st.composite
def valid_insn(draw, opcode: int) -> Instruction:
    form = draw(st.sampled_from(OPCODES[opcode].forms))
    return Instruction(opcode, draw(_field(form.dst)), draw(_field(form.src)),
                       draw(_field(form.off)), draw(_field(form.imm)))


INVALID_OPCODES = sorted(set(range(256)) - set(OPCODES))


def _filler(n: int) -> list[Instruction]:
    return [A.mov64(R0, i) for i in range(n)]


# -- the table -----------------------------------------------------------------------------------


def test_table_covers_the_isa():
    # RFC 9669's opcodes plus the Linux extensions: 128 distinct opcode bytes
    assert len(OPCODES) == 128
    for code in (0x18, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50,  # ld_imm64 and legacy packet loads
                 0x06, 0xE5, 0xD7, 0xBF, 0x81, 0x89, 0x91,  # gotol may_goto bswap mov ldsx
                 0xC3, 0xDB, 0xD3, 0xCB):  # atomics of all four sizes (acquire/release)
        assert code in OPCODES, hex(code)
    for code in (0x00, 0x8C, 0x8F, 0xDF, 0x8D, 0x86, 0x96, 0x38, 0x58, 0x99, 0x0E):
        assert code not in OPCODES, hex(code)  # second-slot 0, neg x, bswap x, callx, ...


def test_form_constraints_follow_the_kernel():
    ok = lambda *f: check_insn(Instruction(*f)) is None  # noqa: E731
    assert ok(0xBF, 1, 2, 1, 1) and ok(0xBF, 1, 2, 1, 0x10000)  # addr_space_cast
    assert not ok(0xBF, 1, 2, 1, 2) and not ok(0xBF, 1, 2, 1, 0x10001)
    assert ok(0xBF, 1, 2, 32, 0) and not ok(0xBC, 1, 2, 32, 0)  # movsx32 has no s32 form
    assert ok(0x3F, 1, 2, 1, 0) and not ok(0x3F, 1, 2, 2, 0)  # sdiv: off 0 or 1
    assert not ok(0x37, 1, 0, 0, 0)  # div by constant zero
    assert ok(0x67, 1, 0, 0, 63) and not ok(0x67, 1, 0, 0, 64) and not ok(0x64, 1, 0, 0, 32)
    assert not ok(0x0F, 1, 2, 1, 0)  # add has no signed form
    assert ok(0xDC, 1, 0, 0, 16) and not ok(0xDC, 1, 0, 0, 8)  # be8 does not exist
    assert ok(0xDB, 1, 2, 0, AtomicOp.LOAD_ACQ) and ok(0xD3, 1, 2, 0, AtomicOp.STORE_REL)
    assert not ok(0xD3, 1, 2, 0, AtomicOp.ADD)  # 8-bit RMW atomics do not exist
    assert not ok(0xDB, 1, 2, 0, 0x11)  # the withdrawn draft encoding of load-acquire
    assert ok(0x85, 0, 2, 3, 77) and not ok(0x85, 0, 1, 3, 77) and not ok(0x85, 0, 3, 0, 1)
    assert not ok(0x85, 1, 0, 0, 1)  # call uses dst
    assert not ok(0x95, 0, 0, 0, 1) and not ok(0x05, 0, 0, 0, 1) and not ok(0x06, 0, 0, 1, 5)
    assert not ok(0xE5, 0, 1, 0, 0)  # only may_goto (src 0) exists
    assert not ok(0x62, 1, 2, 0, 0)  # st uses src
    assert not ok(0x79, 1, 2, 0, 1)  # ldx uses imm
    assert not ok(0x20, 1, 0, 0, 0) and not ok(0x20, 0, 1, 0, 0) and ok(0x40, 0, 1, 0, 4)
    assert not ok(0x15, 1, 2, 0, 0) and not ok(0x1D, 1, 2, 0, 1)  # K uses src / X uses imm
    assert check_insn(Instruction(0xB7, 11, 0, 0, 0)) == "invalid dst register r11"
    assert "addr_space_cast" in check_insn(Instruction(0xBF, 1, 2, 1, 7))


@pytest.mark.parametrize("opcode", sorted(OPCODES), ids=lambda c: f"{c:#04x}")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_every_valid_opcode(opcode, data):
    insn = data.draw(valid_insn(opcode))
    raw = insn.encode()
    assert len(raw) == 8 and raw[0] == opcode
    assert raw[1] == insn.dst | (insn.src << 4)
    assert int.from_bytes(raw[2:4], "little", signed=True) == insn.off
    assert int.from_bytes(raw[4:8], "little", signed=True) == insn.imm
    assert Instruction.decode(raw) == insn
    prog = [insn]
    if insn.is_ld_imm64:  # a map fd/index carries nothing in the upper half
        hi = 0 if insn.src in (1, 5) else data.draw(_field(Span(-2**31, 2**31 - 1)))
        prog.append(Instruction(0, 0, 0, 0, hi))
    assert decode(encode(prog)) == prog
    assert check_insn(insn) is None
    # placed in a program that holds its jump target, validate accepts it
    rel = insn.jump_target(0)
    if rel is None:
        validate(prog + [A.exit_()])
    elif abs(rel) > 2000:
        with pytest.raises(InvalidInstruction, match="out of range"):
            validate(prog + [A.exit_()])
    else:
        before = max(0, -rel)
        after = max(0, before + rel - (before + len(prog)) + 1)
        full = _filler(before) + prog + _filler(after) + [A.exit_()]
        if insn.is_ld_imm64 and rel == 1:  # would land on its own second slot
            with pytest.raises(InvalidInstruction, match="middle of an ld_imm64"):
                validate(full)
        else:
            validate(full)
    assert isinstance(format_insn(insn, prog[1] if insn.is_ld_imm64 else None), str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_typed(data):
    try:
        insns = decode(data)
    except InvalidInstruction as e:
        assert len(data) % 8 and e.insn_index == len(data) // 8
        return
    assert len(insns) == len(data) // 8 and encode(insns) == data
    try:
        validate(insns)
    except InvalidInstruction as e:
        assert e.insn_index is not None and 0 <= e.insn_index < len(insns)
    for line in disassemble(insns):  # never raises, whatever the bytes
        assert isinstance(line, str)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20), st.data())
def test_validate_names_the_bad_index(n, data):
    prog = _filler(n) + [A.exit_()]
    idx = data.draw(st.integers(0, n))
    bad = data.draw(st.one_of(
        st.builds(Instruction, st.sampled_from(INVALID_OPCODES), st.integers(0, 10),
                  st.integers(0, 10), st.integers(-2**15, 2**15 - 1),
                  st.integers(-2**31, 2**31 - 1)),
        st.builds(Instruction, st.just(0xB7), st.integers(11, 15)),  # dst > r10
        st.builds(Instruction, st.just(0x0F), st.just(1), st.integers(11, 15)),  # src > r10
        st.builds(Instruction, st.just(0x07), st.just(1), st.integers(1, 10)),  # reserved src
    ))
    prog.insert(idx, bad)
    with pytest.raises(InvalidInstruction) as ei:
        validate(prog)
    assert ei.value.insn_index == idx
    assert f"instruction {idx}" in str(ei.value)


def test_validate_structure():
    ex = A.exit_()
    validate([A.mov64(R0, 0), ex])
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.mov64(R0, 0), *A.ld_imm64(R1, 5)[:1]])
    assert ei.value.insn_index == 1 and "second slot" in str(ei.value)
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.ld_imm64(R1, 5)[0], A.mov64(R0, 0), ex])
    assert ei.value.insn_index == 1
    with pytest.raises(InvalidInstruction) as ei:
        validate([*A.ld_map_fd(R1, 3)[:1], Instruction(0, 0, 0, 0, 1), ex])
    assert ei.value.insn_index == 1
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.mov64(R0, 0), A.ja(5), ex])
    assert ei.value.insn_index == 1 and "out of range" in str(ei.value)
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.jeq(R1, 0, -2), ex])
    assert ei.value.insn_index == 0
    with pytest.raises(InvalidInstruction) as ei:  # into the middle of an ld_imm64
        validate([A.ja(1), *A.ld_imm64(R1, 1), ex])
    assert ei.value.insn_index == 0 and "ld_imm64" in str(ei.value)
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.call_local(2), ex])
    assert ei.value.insn_index == 0
    validate([A.call_local(1), ex, A.mov64(R0, 1), ex])
    validate([A.gotol(0), ex])
    validate([*A.ld_func(R1, 2), ex, ex])
    with pytest.raises(InvalidInstruction) as ei:
        validate([*A.ld_func(R1, 3), ex, ex])
    assert ei.value.insn_index == 0
    with pytest.raises(InvalidInstruction) as ei:
        validate([A.mov64(R0, 0), Instruction(0xBF, 1, 2, 1, 0x10001), ex])
    assert ei.value.insn_index == 1 and "addr_space_cast" in str(ei.value)
    with pytest.raises(InvalidInstruction):
        validate([A.mov64(R0, 0), "exit"])  # type: ignore[list-item]


def test_decode_errors_and_fields():
    with pytest.raises(InvalidInstruction) as ei:
        decode(b"\x95" + bytes(11))
    assert ei.value.insn_index == 1
    with pytest.raises(InvalidInstruction):
        Instruction.decode(bytes(7))
    with pytest.raises(InvalidInstruction) as ei:
        encode([A.exit_(), Instruction(0xB7, 1, 0, 0, 1 << 31)])
    assert ei.value.insn_index == 1
    i = Instruction.decode(bytes.fromhex("bf21ffff00000080"))
    assert (i.opcode, i.dst, i.src, i.off, i.imm) == (0xBF, 1, 2, -1, -(2**31))
    assert decode(memoryview(b"\x95" + bytes(7))) == [A.exit_()]


def test_imm64_helpers():
    assert imm64(-1, -1) == 2**64 - 1
    assert imm64(0x55667788, 0x11223344) == 0x1122334455667788
    for v in (0, 1, -1, 2**63, -(2**63), 2**64 - 1, 0xDEADBEEF):
        lo, hi = split_imm64(v)
        assert imm64(lo, hi) == v & (2**64 - 1)
    pair = A.ld_imm64(R2, -2)
    assert imm64(pair[0].imm, pair[1].imm) == 2**64 - 2 and pair[1].opcode == 0


def test_predicates():
    assert A.call_helper(1).is_helper_call and A.call_helper(1).is_call
    assert A.call_kfunc(5).is_kfunc_call and not A.call_kfunc(5).is_helper_call
    assert A.call_local(3).is_pseudo_call and A.call_local(3).jump_target(10) == 14
    assert A.exit_().is_exit and not A.exit_().is_jump
    assert A.ja(-1).is_jump and A.ja(-1).jump_target(5) == 5
    assert A.gotol(1000).jump_target(0) == 1001 and A.may_goto(2).jump_target(1) == 4
    assert A.jne32(R1, R2, 7).jump_target(0) == 8 and not A.call_local(3).is_jump
    assert A.ld_imm64(R0, 1)[0].is_ld_imm64 and A.ld_func(R1, 4)[0].jump_target(2) == 7
    assert A.mov64(R0, 1).jump_target(0) is None
    i = A.ldx(Size.DW, R1, R10, -8)
    assert (i.cls, i.mode, i.size, i.kind) == (1, 0x60, Size.DW, Kind.LDX)
    assert i.replace(off=16).off == 16 and i.off == -8


# -- helpers -------------------------------------------------------------------------------------


def test_helper_table():
    assert HELPER_NAMES[1] == "map_lookup_elem" and HELPER_NAMES[12] == "tail_call"
    assert HELPER_NAMES[130] == "ringbuf_output" and HELPER_NAMES[211] == "cgrp_storage_delete"
    assert len(HELPER_NAMES) == 212 and sorted(HELPER_NAMES) == list(range(212))
    assert len(set(HELPER_NAMES.values())) == 212
    assert helper_id("bpf_loop") == 181 == helper_id("loop") == Helper.loop
    assert helper_name(5) == "bpf_ktime_get_ns" and helper_name(9999) is None
    assert helper_id("no_such_helper") is None


# -- assembler -----------------------------------------------------------------------------------


def test_assembler_labels():
    a = Assembler()
    a.mov64(R0, 0)
    a.label("top")
    a.jeq(R1, 0, "out")  # slot 1
    a.ld_imm64(R2, 1 << 40)  # slots 2-3
    a.add64(R0, R2)
    a.jne32(R1, R2, "top")  # slot 5
    a.ja("out")
    a.call_local("fn")
    a.label("out")
    a.exit_()  # slot 8
    a.label("fn")
    a.gotol("fn2")
    a.label("fn2")
    a.may_goto("fn2")
    a.exit_()
    insns = a.assemble()
    assert len(insns) == len(a) == 12
    assert insns[1].off == 8 - 1 - 1
    assert insns[5].off == 1 - 5 - 1
    assert insns[6].off == 8 - 6 - 1
    assert insns[7].imm == 9 - 7 - 1 and insns[7].is_pseudo_call
    assert insns[9].imm == 0 and insns[10].off == -1
    assert a.labels == {"top": 1, "out": 8, "fn": 9, "fn2": 10}
    validate(insns)
    assert decode(encode(insns)) == insns


def test_assembler_errors():
    a = Assembler()
    a.label("x")
    with pytest.raises(AssemblerError, match="duplicate"):
        a.label("x")
    a.ja("nowhere")
    a.exit_()
    with pytest.raises(AssemblerError, match="unknown label 'nowhere'"):
        a.assemble()

    b = Assembler()
    b.ja("end")
    b.exit_()
    b.label("end")
    with pytest.raises(AssemblerError, match="end of the program"):
        b.assemble()

    far = Assembler()
    far.ja("far")
    for _ in range(40000):
        far.mov64(R0, 0)
    far.label("far")
    far.exit_()
    with pytest.raises(AssemblerError, match="16-bit"):
        far.assemble()
    ok = Assembler()
    ok.gotol("far")
    ok.emit(_filler(40000))
    ok.label("far")
    ok.exit_()
    assert ok.assemble()[0].imm == 40000

    for bad in (lambda: A.mov64(R0, 1 << 32), lambda: A.mov64(11, 0), lambda: A.ldx(3, R0, R1),
                lambda: A.ldsx(8, R0, R1), lambda: A.ja(1 << 15), lambda: A.movsx32(R1, R2, 32),
                lambda: A.addr_space_cast(R1, R2, 1, 1), lambda: A.call_helper("nope"),
                lambda: A.atomic_add(Size.B, R1, R2), lambda: A.endian(R1, 8, "be"),
                lambda: A.alu64("frob", R1, 2), lambda: A.jmp("exit", R1, 0, 1),
                lambda: A.ld_imm64(R1, 1 << 64), lambda: A.st("q", R1, 0, 0)):
        with pytest.raises(AssemblerError):
            bad()


def test_operand_forms():
    assert A.mov64(R1, 2) == Instruction(0xB7, 1, 0, 0, 2)  # a plain int is an immediate
    assert A.mov64(R1, R2) == Instruction(0xBF, 1, 2, 0, 0)
    assert A.mov32(R1, 0xFFFFFFFF).imm == -1  # unsigned 32-bit values are reinterpreted
    assert A.ldx(8, R1, R2) == A.ldx(Size.DW, R1, R2) == A.ldx("dw", R1, R2) == A.ldx("u64", 1, 2)
    assert A.alu64("add", R1, 3) == A.add64(R1, 3) == A.alu64(0x00, R1, 3)
    assert A.jmp("jeq", R1, R2, 4) == A.jeq(R1, R2, 4)
    assert A.call_helper("map_update_elem") == A.call_helper(2) == A.call_helper(Helper.map_update_elem)
    assert A.atomic_add(Size.W, R1, R2, fetch=True).imm == AtomicOp.FETCH_ADD
    assert A.cast_kern(R1, R2).imm == 1 and A.cast_user(R1, R2).imm == 0x10000


# -- disassembler --------------------------------------------------------------------------------

GOLDEN = [
    (A.mov64(R0, 0), "r0 = 0"),
    (A.mov64(R1, -1), "r1 = -1"),
    (A.mov32(R1, R2), "w1 = w2"),
    (A.add32(R1, R2), "w1 += w2"),
    (A.sub64(R1, 5), "r1 -= 5"),
    (A.mul32(R1, 3), "w1 *= 3"),
    (A.div64(R1, 3), "r1 /= 3"),
    (A.sdiv64(R1, R2), "r1 s/= r2"),
    (A.mod64(R1, R2), "r1 %= r2"),
    (A.smod32(R1, 3), "w1 s%= 3"),
    (A.or64(R1, 8), "r1 |= 8"),
    (A.and32(R1, R2), "w1 &= w2"),
    (A.lsh32(R1, R2), "w1 <<= w2"),
    (A.rsh64(R1, 4), "r1 >>= 4"),
    (A.arsh64(R1, 3), "r1 s>>= 3"),
    (A.xor64(R1, R2), "r1 ^= r2"),
    (A.neg64(R3), "r3 = -r3"),
    (A.neg32(R3), "w3 = -w3"),
    (A.movsx64(R1, R2, 8), "r1 = (s8)r2"),
    (A.movsx64(R1, R2, 32), "r1 = (s32)r2"),
    (A.movsx32(R1, R2, 16), "w1 = (s16)w2"),
    (A.be(R1, 16), "r1 = be16 r1"),
    (A.le(R2, 32), "r2 = le32 r2"),
    (A.bswap(R1, 64), "r1 = bswap64 r1"),
    (A.cast_kern(R1, R2), "r1 = addr_space_cast(r2, 0, 1)"),
    (A.cast_user(R1, R2), "r1 = addr_space_cast(r2, 1, 0)"),
    (A.ldx(Size.DW, R1, R10, -8), "r1 = *(u64 *)(r10 -8)"),
    (A.ldx(Size.B, R0, R1, 0), "r0 = *(u8 *)(r1 +0)"),
    (A.ldsx(Size.H, R1, R2, 2), "r1 = *(s16 *)(r2 +2)"),
    (A.ldsx(Size.W, R1, R2, -4), "r1 = *(s32 *)(r2 -4)"),
    (A.stx(Size.W, R1, R2, 4), "*(u32 *)(r1 +4) = r2"),
    (A.st(Size.B, R1, 0, 7), "*(u8 *)(r1 +0) = 7"),
    (A.st(Size.DW, R10, -16, -3), "*(u64 *)(r10 -16) = -3"),
    (A.atomic_add(Size.DW, R1, R2), "lock *(u64 *)(r1 +0) += r2"),
    (A.atomic_or(Size.W, R1, R2, 8), "lock *(u32 *)(r1 +8) |= r2"),
    (A.atomic_and(Size.W, R1, R2), "lock *(u32 *)(r1 +0) &= r2"),
    (A.atomic_xor(Size.DW, R1, R2), "lock *(u64 *)(r1 +0) ^= r2"),
    (A.atomic_add(Size.DW, R1, R0, fetch=True), "r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)"),
    (A.atomic_xor(Size.W, R1, R3, -4, fetch=True), "r3 = atomic_fetch_xor((u32 *)(r1 -4), r3)"),
    (A.atomic_and(Size.DW, R1, R3, fetch=True), "r3 = atomic64_fetch_and((u64 *)(r1 +0), r3)"),
    (A.atomic_or(Size.W, R1, R3, fetch=True), "r3 = atomic_fetch_or((u32 *)(r1 +0), r3)"),
    (A.cmpxchg(Size.DW, R1, R2), "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"),
    (A.cmpxchg(Size.W, R1, R2, 4), "r0 = atomic_cmpxchg((u32 *)(r1 +4), r0, r2)"),
    (A.xchg(Size.W, R1, R2), "r2 = atomic_xchg((u32 *)(r1 +0), r2)"),
    (A.xchg(Size.DW, R1, R2), "r2 = atomic64_xchg((u64 *)(r1 +0), r2)"),
    (A.load_acquire(Size.W, R0, R1), "r0 = load_acquire((u32 *)(r1 +0))"),
    (A.load_acquire(Size.B, R3, R1, 2), "r3 = load_acquire((u8 *)(r1 +2))"),
    (A.store_release(Size.DW, R1, R2, 16), "store_release((u64 *)(r1 +16), r2)"),
    (A.jeq(R1, 0, 3), "if r1 == 0x0 goto pc+3"),
    (A.jsgt32(R1, R2, -2), "if w1 s> w2 goto pc-2"),
    (A.jne(R1, -1, 1), "if r1 != 0xffffffff goto pc+1"),
    (A.jset32(R1, 8, 2), "if w1 & 0x8 goto pc+2"),
    (A.jgt(R1, R2, 0), "if r1 > r2 goto pc+0"),
    (A.jge(R1, 16, 1), "if r1 >= 0x10 goto pc+1"),
    (A.jlt32(R1, R2, 1), "if w1 < w2 goto pc+1"),
    (A.jle(R1, R2, 1), "if r1 <= r2 goto pc+1"),
    (A.jsge(R1, 1, 1), "if r1 s>= 0x1 goto pc+1"),
    (A.jslt(R1, R2, 1), "if r1 s< r2 goto pc+1"),
    (A.jsle32(R1, 0, -7), "if w1 s<= 0x0 goto pc-7"),
    (A.ja(1), "goto pc+1"),
    (A.ja(-1), "goto pc-1"),
    (A.gotol(100), "gotol pc+100"),
    (A.may_goto(2), "may_goto pc+2"),
    (A.call_helper(1), "call bpf_map_lookup_elem#1"),
    (A.call_helper("ringbuf_output"), "call bpf_ringbuf_output#130"),
    (Instruction(0x85, 0, 0, 0, 5000), "call unknown#5000"),
    (A.call_local(5), "call pc+5"),
    (A.call_local(-3), "call pc-3"),
    (A.call_kfunc(1234), "call kernel-function#1234"),
    (A.exit_(), "exit"),
    (A.ld_abs(Size.B, 14), "r0 = *(u8 *)skb[14]"),
    (A.ld_ind(Size.H, R1, 2), "r0 = *(u16 *)skb[r1 + 2]"),
    (A.ld_imm64(R0, 0x123), "r0 = 0x123 ll"),
    (A.ld_imm64(R1, -1), "r1 = 0xffffffffffffffff ll"),
    (A.ld_imm64(R1, 0x1122334455667788), "r1 = 0x1122334455667788 ll"),
    (A.ld_map_fd(R1, 3), "r1 = map[fd:3]"),
    (A.ld_map_value(R1, 3, 8), "r1 = map[fd:3][0]+8"),
    (A.ld_map_idx(R2, 0), "r2 = map[idx:0]"),
    (A.ld_map_idx_value(R2, 1, 16), "r2 = map[idx:1][0]+16"),
    (A.ld_btf_id(R3, 77), "r3 = btf_id[77]"),
    (A.ld_func(R4, 6), "r4 = subprog[+6]"),
    (Instruction(0x8C, 1, 2), "<invalid opcode 0x8c>"),
]


@pytest.mark.parametrize("insn,text", GOLDEN, ids=[t for _, t in GOLDEN])
def test_disasm_golden(insn, text):
    if isinstance(insn, list):
        assert format_insn(insn[0], insn[1]) == text
        assert disassemble(insn, with_index=False) == [text]
    else:
        assert format_insn(insn) == text == str(insn)


def test_disassemble_indexes_skip_second_slot():
    prog = [A.mov64(R0, 0), *A.ld_imm64(R1, 7), A.exit_()]
    assert disassemble(prog) == ["0: r0 = 0", "1: r1 = 0x7 ll", "3: exit"]
    assert "missing" in disassemble(prog[:2])[1]


# -- cross-checks against clang-19 -----------------------------------------------------------------

# (DSL, LLVM assembler syntax): LLVM's encoding is the reference for our assembler
LLVM_ASM = [
    (A.mov64(R0, 0), "r0 = 0"), (A.mov32(R1, R2), "w1 = w2"), (A.mov64(R1, -7), "r1 = -7"),
    (A.add32(R1, R2), "w1 += w2"), (A.sub64(R3, -5), "r3 -= -5"), (A.mul64(R1, R2), "r1 *= r2"),
    (A.div64(R1, R2), "r1 /= r2"), (A.div32(R1, 9), "w1 /= 9"), (A.sdiv64(R1, R2), "r1 s/= r2"),
    (A.sdiv32(R1, 3), "w1 s/= 3"), (A.smod64(R1, 7), "r1 s%= 7"), (A.mod32(R1, R2), "w1 %= w2"),
    (A.smod32(R1, R2), "w1 s%= w2"), (A.or64(R1, R2), "r1 |= r2"), (A.and32(R1, 255), "w1 &= 255"),
    (A.lsh64(R1, 3), "r1 <<= 3"), (A.rsh32(R1, R2), "w1 >>= w2"), (A.arsh64(R1, 7), "r1 s>>= 7"),
    (A.arsh32(R1, R2), "w1 s>>= w2"), (A.xor64(R1, R2), "r1 ^= r2"), (A.neg64(R1), "r1 = -r1"),
    (A.neg32(R1), "w1 = -w1"), (A.movsx64(R1, R2, 32), "r1 = (s32)r2"),
    (A.movsx64(R1, R2, 16), "r1 = (s16)r2"), (A.movsx32(R1, R2, 8), "w1 = (s8)w2"),
    (A.be(R1, 16), "r1 = be16 r1"), (A.le(R1, 64), "r1 = le64 r1"),
    (A.bswap(R1, 32), "r1 = bswap32 r1"), (A.bswap(R2, 16), "r2 = bswap16 r2"),
    (A.ldx(Size.B, R1, R2, 1), "r1 = *(u8 *)(r2 + 1)"),
    (A.ldx(Size.DW, R1, R10, -8), "r1 = *(u64 *)(r10 - 8)"),
    (A.ldsx(Size.W, R1, R2, -4), "r1 = *(s32 *)(r2 - 4)"),
    (A.ldsx(Size.B, R1, R2, 0), "r1 = *(s8 *)(r2 + 0)"),
    (A.stx(Size.H, R1, R2, 6), "*(u16 *)(r1 + 6) = r2"),
    (A.st(Size.DW, R10, -8, 5), "*(u64 *)(r10 - 8) = 5"),
    (A.st(Size.W, R1, 4, -1), "*(u32 *)(r1 + 4) = -1"),
    (A.atomic_add(Size.W, R1, R2), "lock *(u32 *)(r1 + 0) += w2"),
    (A.atomic_and(Size.DW, R1, R2, 8), "lock *(u64 *)(r1 + 8) &= r2"),
    (A.atomic_or(Size.DW, R1, R2), "lock *(u64 *)(r1 + 0) |= r2"),
    (A.atomic_xor(Size.W, R1, R2), "lock *(u32 *)(r1 + 0) ^= w2"),
    (A.atomic_add(Size.DW, R1, R2, fetch=True), "r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)"),
    (A.atomic_and(Size.W, R1, R2, fetch=True), "w2 = atomic_fetch_and((u32 *)(r1 + 0), w2)"),
    (A.atomic_or(Size.DW, R1, R2, fetch=True), "r2 = atomic_fetch_or((u64 *)(r1 + 0), r2)"),
    (A.atomic_xor(Size.DW, R1, R2, fetch=True), "r2 = atomic_fetch_xor((u64 *)(r1 + 0), r2)"),
    (A.xchg(Size.DW, R1, R2), "r2 = xchg_64(r1 + 0, r2)"),
    (A.xchg(Size.W, R1, R2), "w2 = xchg32_32(r1 + 0, w2)"),
    (A.cmpxchg(Size.DW, R1, R2), "r0 = cmpxchg_64(r1 + 0, r0, r2)"),
    (A.cmpxchg(Size.W, R1, R2), "w0 = cmpxchg32_32(r1 + 0, w0, w2)"),
    (A.ld_imm64(R1, 0x1122334455667788), "r1 = 0x1122334455667788 ll"),
    (A.ja(1), "goto +1"), (A.ja(-3), "goto -3"), (A.gotol(100), "gotol +100"),
    (A.may_goto(2), "may_goto +2"),
    (A.jeq(R1, 0, 3), "if r1 == 0 goto +3"), (A.jsgt32(R1, R2, -2), "if w1 s> w2 goto -2"),
    (A.jne(R1, R2, 1), "if r1 != r2 goto +1"), (A.jgt32(R1, 5, 1), "if w1 > 5 goto +1"),
    (A.jge(R1, R2, 1), "if r1 >= r2 goto +1"), (A.jlt(R1, 5, 1), "if r1 < 5 goto +1"),
    (A.jle32(R1, R2, 1), "if w1 <= w2 goto +1"), (A.jsge(R1, -1, 1), "if r1 s>= -1 goto +1"),
    (A.jslt32(R1, R2, 1), "if w1 s< w2 goto +1"), (A.jsle(R1, 9, 1), "if r1 s<= 9 goto +1"),
    (A.jset(R1, R2, 1), "if r1 & r2 goto +1"), (A.jset32(R1, 4, 1), "if w1 & 4 goto +1"),
    (A.call_helper(1), "call 1"),
    (A.cast_kern(R1, R2), "r1 = addr_space_cast(r2, 0, 1)"),
    (A.cast_user(R3, R4), "r3 = addr_space_cast(r4, 1, 0)"),
    (A.ld_abs(Size.W, 12), "r0 = *(u32 *)skb[12]"),
    (A.exit_(), "exit"),
]

needs_clang = pytest.mark.skipif(CLANG is None, reason="clang-19 is not installed")


def _text_section(obj: Path, name: str = ".text") -> bytes:
    from elftools.elf.elffile import ELFFile

    with open(obj, "rb") as f:
        sec = ELFFile(f).get_section_by_name(name)
        assert sec is not None, name
        return sec.data()


@needs_clang
def test_assembler_matches_llvm(tmp_path):
    src = tmp_path / "a.s"
    src.write_text("\t.text\n" + "".join(f"\t{text}\n" for _, text in LLVM_ASM))
    obj = tmp_path / "a.o"
    subprocess.run([CLANG, "-target", "bpf", "-mcpu=v4", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    got = _text_section(obj)
    pos = 0
    for insn, text in LLVM_ASM:
        ours = encode(insn if isinstance(insn, list) else [insn])
        assert got[pos:pos + len(ours)] == ours, text
        pos += len(ours)
    assert pos == len(got)


C_PROG = r"""
typedef unsigned long long u64; typedef unsigned int u32;
#define __arena __attribute__((address_space(1)))
#define SEC(n) __attribute__((section(n), used))
struct { int (*type)[33]; int (*max_entries)[16]; } arena SEC(".maps");
struct { int (*type)[2]; int (*max_entries)[4]; u32 *key; u64 *value; } counts SEC(".maps");
extern void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, u32 page_cnt,
                                           int node_id, u64 flags) __attribute__((weak)) SEC(".ksyms");
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
u64 total; int limit = 5; char small;
__attribute__((noinline)) static long helper(long x, long y) { return x / (y | 1) + x % 7; }
long walk(signed char *p, short *q, int n)
{
    long s = 0;
    for (int i = 0; i < n; i++) s += p[i] * q[i];
    return s;
}
SEC("syscall") int prog(void *ctx)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    u64 __arena *p = bpf_arena_alloc_pages(&arena, 0, 1, -1, 0);
    if (!p || !v) return 1;
    *p = 42;
    __sync_fetch_and_add(p, 2);
    u64 old = __sync_fetch_and_add(p, 3);
    __sync_fetch_and_or(p, 8); __sync_fetch_and_and(p, ~1ULL); __sync_fetch_and_xor(p, 4);
    __sync_val_compare_and_swap(p, 5, 7);
    __sync_lock_test_and_set(p, 9);
    *v += __builtin_bswap64(*p) + __builtin_bswap16((unsigned short)old);
    for (int i = 0; i < limit; i++) total += helper(i, (long)small);
    return (int)(u64)p + (int)total;
}
char _license[] SEC("license") = "GPL";
"""


@needs_clang
def test_clang_object_roundtrip(tmp_path):
    from elftools.elf.elffile import ELFFile

    src = tmp_path / "prog.bpf.c"
    src.write_text(C_PROG)
    obj = tmp_path / "prog.bpf.o"
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-mcpu=v4", "-c", str(src), "-o",
                    str(obj)], check=True, capture_output=True, text=True)
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        sections = {s.name: s.data() for s in elf.iter_sections()
                    if s["sh_type"] == "SHT_PROGBITS" and s["sh_flags"] & 0x4}  # SHF_EXECINSTR
    assert ".text" in sections and "syscall" in sections
    kinds = set()
    for name, data in sections.items():
        insns = decode(data)
        assert encode(insns) == data, name
        validate(insns, calls=False)  # calls into .text go through relocations until linked
        if name == ".text":
            validate(insns)
        lines = disassemble(insns)
        assert not any("invalid" in ln for ln in lines), name
        kinds |= {i.kind for i in insns}
        kinds |= {("atomic", i.imm) for i in insns if i.kind == Kind.ATOMIC}
        kinds |= {("cast", i.imm) for i in insns if i.kind == Kind.MOV and i.off == 1}
    # link by hand as libbpf does: append .text and retarget the calls into it
    prog, text = decode(sections["syscall"]), decode(sections[".text"])
    calls = [i for i, insn in enumerate(prog) if insn.is_pseudo_call]
    assert calls
    with pytest.raises(InvalidInstruction) as ei:
        validate(prog)
    assert ei.value.insn_index in calls
    linked = list(prog)
    for i in calls:  # a call's imm is relative to its section symbol: target = (imm + 1) slots
        linked[i] = prog[i].replace(imm=len(prog) + prog[i].imm + 1 - i - 1)
    validate(linked + text)
    # the program exercised what it was written to exercise
    for k in (Kind.LDSX, Kind.LD_IMM64, Kind.CALL, Kind.END, ("cast", 1), ("atomic", 0),
              ("atomic", AtomicOp.FETCH_ADD), ("atomic", AtomicOp.CMPXCHG),
              ("atomic", AtomicOp.XCHG)):
        assert k in kinds, k


def test_errors_are_typed():
    assert issubclass(InvalidInstruction, BPFError) and issubclass(AssemblerError, BPFError)
