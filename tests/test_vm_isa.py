"""Instruction semantics of the VM, with the kernel as the oracle.

Each test builds one program per operation that evaluates many (a, b) pairs and stores every
result in the arena; the same ObjectSpec runs on the `backend` fixture (kernel and VM), and the
results must equal an independent Python model of the kernel's rules (kernel/bpf/core.c and the
verifier's div/mod fixups). So the model is checked by the kernel, and the VM by both.
"""

from __future__ import annotations

import pytest

import bpfarena
from bpfarena.isa import asm
from bpfarena.isa.asm import R0, R1, R2, R3, R8, R9, R10
from bpfarena.isa.insn import Instruction
from bpfarena.obj.spec import MapSpec, ObjectSpec, ProgramSpec, Relocation, RelocKind

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF
PAGE = 4096
VALUES = [0, 1, 2, 7, M64, M64 - 6, 63, 64, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000,
          1 << 63, (1 << 63) - 1, 0x123456789ABCDEF0, 0xFFFFFFFF80000000]
PAIRS = [(a, b) for a in VALUES for b in VALUES]
RESULT_PAGES = 2 * 8 * len(PAIRS) // PAGE + 1


def sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _trunc_mod(a: int, b: int) -> int:
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def ref_alu(op: str, bits: int, a: int, b: int) -> int:
    """The kernel's result of `a op= b` (b already the operand value), zero-extended."""
    m = (1 << bits) - 1
    a &= m
    b &= m
    sh = b & (bits - 1)
    if op == "add":
        r = a + b
    elif op == "sub":
        r = a - b
    elif op == "mul":
        r = a * b
    elif op == "div":
        r = a // b if b else 0
    elif op == "mod":
        r = a % b if b else a
    elif op == "sdiv":
        r = 0 if b == 0 else _trunc_div(sx(a, bits), sx(b, bits))
    elif op == "smod":
        r = a if b == 0 else _trunc_mod(sx(a, bits), sx(b, bits))
    elif op == "or":
        r = a | b
    elif op == "and":
        r = a & b
    elif op == "xor":
        r = a ^ b
    elif op == "lsh":
        r = a << sh
    elif op == "rsh":
        r = a >> sh
    elif op == "arsh":
        r = sx(a, bits) >> sh
    else:
        raise AssertionError(op)
    return r & m


def ref_jump(op: str, bits: int, a: int, b: int) -> bool:
    m = (1 << bits) - 1
    a &= m
    b &= m
    sa, sb = sx(a, bits), sx(b, bits)
    return {"jeq": a == b, "jne": a != b, "jgt": a > b, "jge": a >= b, "jlt": a < b,
            "jle": a <= b, "jset": bool(a & b), "jsgt": sa > sb, "jsge": sa >= sb,
            "jslt": sa < sb, "jsle": sa <= sb}[op]


# --- building and running one object on a back end ---------------------------------------------
def result_prologue(a: asm.Assembler) -> None:
    """r9 = the arena's first page (kernel form); slot 0 is relocated to the arena start."""
    a.emit(asm.ld_imm64(R9, 0))
    a.emit([asm.cast_kern(R9, R9)])


ARENA_RELOC = Relocation(0, RelocKind.ARENA, "arena", 0)


def make_spec(programs: dict[str, tuple[list[Instruction], list[Relocation]]],
              pages: int = RESULT_PAGES + 2, flags: int = 0, map_extra: int = 0) -> ObjectSpec:
    arena = MapSpec(name="arena", type=33, max_entries=pages, flags=0x400 | flags,
                    map_extra=map_extra)
    spec = ObjectSpec(maps={"arena": arena}, arena_map="arena")
    for name, (insns, relocs) in programs.items():
        spec.programs[name] = ProgramSpec(name=name, section="syscall", prog_type=31,
                                          sleepable=True, insns=insns, relocations=relocs)
    return spec


def run_all(spec: ObjectSpec, backend: str, pages_to_fault: int = RESULT_PAGES,
            **opts) -> dict[str, tuple[int, bytes]]:
    """Run every program once on a fresh arena page set; (retval, result pages) per program."""
    out = {}
    with bpfarena.load(spec, backend=backend, **opts) as obj:
        ar = obj.arena
        for name, prog in obj.programs.items():
            ar.write(ar.user_vm_start, bytes(pages_to_fault * PAGE))  # fault the pages in
            res = prog.run()
            out[name] = (res.retval, ar.read(ar.user_vm_start, pages_to_fault * PAGE))
    return out


def u64s(data: bytes, n: int) -> list[int]:
    return [int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(n)]


# --- ALU ------------------------------------------------------------------------------------------
ALU_OPS = ["add", "sub", "mul", "div", "mod", "sdiv", "smod", "or", "and", "xor", "lsh", "rsh",
           "arsh"]


def _alu_insn(op: str, bits: int, dst, src) -> Instruction:
    return getattr(asm, f"{op}{bits}")(dst, src)


def _alu_program(op: str, bits: int, imm: bool) -> tuple[list[Instruction], list[Relocation]]:
    a = asm.Assembler()
    result_prologue(a)
    for k, (x, y) in enumerate(PAIRS):
        a.emit(asm.ld_imm64(R1, x))
        if imm:
            yv = sx(y, 32)
            if op in ("div", "mod", "sdiv", "smod") and yv == 0:
                yv = 3
            if op in ("lsh", "rsh", "arsh"):
                yv &= bits - 1
            a.emit([_alu_insn(op, bits, R1, yv)])
        else:
            a.emit(asm.ld_imm64(R2, y))
            a.emit([_alu_insn(op, bits, R1, R2)])
        a.emit([asm.stx("dw", R9, R1, 8 * k)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    return a.assemble(), [ARENA_RELOC]


def _alu_expected(op: str, bits: int, imm: bool) -> list[int]:
    out = []
    for x, y in PAIRS:
        if imm:
            yv = sx(y, 32)
            if op in ("div", "mod", "sdiv", "smod") and yv == 0:
                yv = 3
            if op in ("lsh", "rsh", "arsh"):
                yv &= bits - 1
            y = yv & (M64 if bits == 64 else M32)  # imm is sign-extended for ALU64
        out.append(ref_alu(op, bits, x, y))
    return out


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("imm", [False, True], ids=["reg", "imm"])
def test_alu(backend, bits, imm):
    progs = {f"{op}{bits}": _alu_program(op, bits, imm) for op in ALU_OPS}
    got = run_all(make_spec(progs), backend)
    for op in ALU_OPS:
        want = _alu_expected(op, bits, imm)
        have = u64s(got[f"{op}{bits}"][1], len(PAIRS))
        bad = [(hex(x), hex(y), hex(w), hex(h))
               for (x, y), w, h in zip(PAIRS, want, have, strict=True) if w != h]
        assert not bad, f"{op}{bits} ({'imm' if imm else 'reg'}): (a, b, want, got) {bad[:5]}"


def _unary_program(make) -> tuple[list[Instruction], list[Relocation]]:
    a = asm.Assembler()
    result_prologue(a)
    for k, x in enumerate(VALUES):
        a.emit(asm.ld_imm64(R1, x))
        a.emit(asm.ld_imm64(R2, 0x5555555555555555))
        a.emit([make()])
        a.emit([asm.stx("dw", R9, R1, 16 * k), asm.stx("dw", R9, R2, 16 * k + 8)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    return a.assemble(), [ARENA_RELOC]


def _bswap(v: int, bits: int) -> int:
    return int.from_bytes((v & ((1 << bits) - 1)).to_bytes(bits // 8, "little"), "big")


UNARY = {
    "neg64": (lambda: asm.neg64(R1), lambda v: -v & M64),
    "neg32": (lambda: asm.neg32(R1), lambda v: -v & M32),
    "mov32": (lambda: asm.mov32(R1, R1), lambda v: v & M32),
    "movsx64_8": (lambda: asm.movsx64(R1, R1, 8), lambda v: sx(v, 8) & M64),
    "movsx64_16": (lambda: asm.movsx64(R1, R1, 16), lambda v: sx(v, 16) & M64),
    "movsx64_32": (lambda: asm.movsx64(R1, R1, 32), lambda v: sx(v, 32) & M64),
    "movsx32_8": (lambda: asm.movsx32(R1, R1, 8), lambda v: sx(v, 8) & M32),
    "movsx32_16": (lambda: asm.movsx32(R1, R1, 16), lambda v: sx(v, 16) & M32),
    "be16": (lambda: asm.be(R1, 16), lambda v: _bswap(v, 16)),
    "be32": (lambda: asm.be(R1, 32), lambda v: _bswap(v, 32)),
    "be64": (lambda: asm.be(R1, 64), lambda v: _bswap(v, 64)),
    "le16": (lambda: asm.le(R1, 16), lambda v: v & 0xFFFF),
    "le32": (lambda: asm.le(R1, 32), lambda v: v & M32),
    "le64": (lambda: asm.le(R1, 64), lambda v: v),
    "bswap16": (lambda: asm.bswap(R1, 16), lambda v: _bswap(v, 16)),
    "bswap32": (lambda: asm.bswap(R1, 32), lambda v: _bswap(v, 32)),
    "bswap64": (lambda: asm.bswap(R1, 64), lambda v: _bswap(v, 64)),
}


def test_unary_moves_and_byte_swaps(backend):
    progs = {name: _unary_program(make) for name, (make, _ref) in UNARY.items()}
    got = run_all(make_spec(progs), backend)
    for name, (_make, ref) in UNARY.items():
        have = u64s(got[name][1], 2 * len(VALUES))
        for k, x in enumerate(VALUES):
            assert have[2 * k] == ref(x), f"{name}({x:#x})"
            assert have[2 * k + 1] == 0x5555555555555555, f"{name} touched another register"


def test_mov_imm_sign_extension(backend):
    a = asm.Assembler()
    result_prologue(a)
    imms = [0, 1, -1, 0x7FFFFFFF, -0x80000000, -2]
    for k, v in enumerate(imms):
        a.emit(asm.ld_imm64(R1, M64))
        a.emit([asm.mov64(R1, v), asm.stx("dw", R9, R1, 16 * k)])
        a.emit(asm.ld_imm64(R1, M64))
        a.emit([asm.mov32(R1, v), asm.stx("dw", R9, R1, 16 * k + 8)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    got = run_all(make_spec({"p": (a.assemble(), [ARENA_RELOC])}), backend)["p"][1]
    have = u64s(got, 2 * len(imms))
    for k, v in enumerate(imms):
        assert have[2 * k] == v & M64
        assert have[2 * k + 1] == v & M32


# --- jumps ----------------------------------------------------------------------------------------
JUMPS = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle"]


def _jump_program(op: str, bits: int) -> tuple[list[Instruction], list[Relocation]]:
    a = asm.Assembler()
    result_prologue(a)
    name = op + ("32" if bits == 32 else "")
    for k, (x, y) in enumerate(PAIRS):
        a.emit(asm.ld_imm64(R1, x))
        a.emit(asm.ld_imm64(R2, y))
        a.emit([asm.mov64(R3, 1)])
        a.emit([getattr(asm, name)(R1, R2, 1)])
        a.emit([asm.mov64(R3, 0)])
        a.emit([asm.stx("b", R9, R3, k)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    return a.assemble(), [ARENA_RELOC]


@pytest.mark.parametrize("bits", [64, 32])
def test_conditional_jumps(backend, bits):
    progs = {op: _jump_program(op, bits) for op in JUMPS}
    got = run_all(make_spec(progs), backend)
    for op in JUMPS:
        data = got[op][1]
        for k, (x, y) in enumerate(PAIRS):
            assert data[k] == ref_jump(op, bits, x, y), f"{op}{bits}({x:#x}, {y:#x})"


def test_jump_with_sign_extended_immediate(backend):
    a = asm.Assembler()
    a.emit(asm.ld_imm64(R1, M64))
    a.mov64(R0, 1)
    a.jeq(R1, -1, "yes")  # imm -1 is compared as 0xffffffffffffffff
    a.mov64(R0, 0)
    a.label("yes")
    a.jeq32(R1, -1, "yes32")  # and as 0xffffffff in 32 bits
    a.mov64(R0, 0)
    a.label("yes32")
    a.exit_()
    got = run_all(make_spec({"p": (a.assemble(), [])}), backend, pages_to_fault=0)
    assert got["p"][0] == 1


def test_gotol_and_backward_loop(backend):
    a = asm.Assembler()
    a.mov64(R0, 0)
    a.mov64(R1, 0)
    a.label("top")
    a.add64(R0, R1)
    a.add64(R1, 1)
    a.jlt(R1, 100, "top")
    a.jeq(R0, 7, "mid")  # never taken; keeps the skipped instruction reachable
    a.gotol("end")
    a.label("mid")
    a.mov64(R0, 12345)
    a.label("end")
    a.exit_()
    got = run_all(make_spec({"p": (a.assemble(), [])}), backend, pages_to_fault=0)
    assert got["p"][0] == sum(range(100))


# --- loads, stores, atomics -----------------------------------------------------------------------
def test_sign_extending_loads_and_store_sizes(backend):
    a = asm.Assembler()
    result_prologue(a)
    a.emit(asm.ld_imm64(R1, 0x8180FF7F_F0E0D0C0))
    a.emit([asm.stx("dw", R10, R1, -8), asm.stx("dw", R9, R1, 4088)])
    k = 0
    for size in ("b", "h", "w"):  # unaligned from the arena (the stack must be aligned)
        for off in (-8, -7, -6, -5, -4):
            a.emit([asm.ldsx(size, R2, R9, 4096 + off), asm.stx("dw", R9, R2, 8 * k)])
            a.emit([asm.ldx(size, R3, R9, 4096 + off), asm.stx("dw", R9, R3, 8 * k + 8)])
            k += 2
    for size, off in (("b", -1), ("h", -2), ("w", -4)):  # aligned from the stack
        a.emit([asm.ldsx(size, R2, R10, off), asm.stx("dw", R9, R2, 8 * k)])
        k += 1
    for size in ("b", "h", "w", "dw"):  # stores of each size, then read back as u64
        a.emit([asm.st("dw", R10, -16, -1), asm.stx(size, R10, R1, -16),
                asm.ldx("dw", R2, R10, -16), asm.stx("dw", R9, R2, 8 * k)])
        a.emit([asm.st("dw", R10, -16, 0), asm.st(size, R10, -16, -3),
                asm.ldx("dw", R2, R10, -16), asm.stx("dw", R9, R2, 8 * k + 8)])
        k += 2
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    got = u64s(run_all(make_spec({"p": (a.assemble(), [ARENA_RELOC])}), backend)["p"][1], k)
    mem = (0x8180FF7F_F0E0D0C0).to_bytes(8, "little")
    want = []
    for n in (1, 2, 4):
        for off in (-8, -7, -6, -5, -4):
            v = int.from_bytes(mem[off + 8:off + 8 + n], "little")
            want += [sx(v, 8 * n) & M64, v]
    for n in (1, 2, 4):
        want.append(sx(int.from_bytes(mem[8 - n:], "little"), 8 * n) & M64)
    for n in (1, 2, 4, 8):
        low = 0x8180FF7F_F0E0D0C0 & ((1 << 8 * n) - 1)
        want.append((M64 & ~((1 << 8 * n) - 1)) | low)
        want.append((-3) & ((1 << 8 * n) - 1))
    assert [hex(v) for v in got] == [hex(v) for v in want]


ATOMICS = [("add", 0x00), ("or", 0x40), ("and", 0x50), ("xor", 0xA0)]
INIT, OPERAND = 0x1111_2222_F0F0_3C3C, 0x0F0F_8888_1234_FFFF


def _atomic_cases(size: str) -> list[tuple[str, int, int]]:
    """(where, op, fetch) in program order. The x86 JIT refuses fetch-or/and/xor on the arena."""
    cases = []
    for where in ("arena", "stack"):
        for _name, code in ATOMICS:
            for fetch in (0, 1):
                if where == "stack" or not fetch or code == 0x00:
                    cases.append((where, code, fetch))
    return cases


def _atomic_program(size: str) -> tuple[list[Instruction], list[Relocation]]:
    """Each atomic on a fresh INIT; the fetch register and the memory after it are stored."""
    a = asm.Assembler()
    result_prologue(a)
    k = 0
    for where, code, fetch in _atomic_cases(size):
        base, off = (R9, 2048) if where == "arena" else (R10, -8)
        a.emit(asm.ld_imm64(R1, INIT))
        a.emit([asm.stx("dw", base, R1, off)])
        a.emit(asm.ld_imm64(R2, OPERAND))
        a.emit([asm.atomic(size, code | fetch, base, R2, off)])
        a.emit([asm.stx("dw", R9, R2, 8 * k), asm.ldx("dw", R3, base, off),
                asm.stx("dw", R9, R3, 8 * k + 8)])
        k += 2
    for base, off in ((R9, 2048), (R10, -8)):
        a.emit(asm.ld_imm64(R1, INIT))
        a.emit([asm.stx("dw", base, R1, off)])
        a.emit(asm.ld_imm64(R2, OPERAND))
        a.emit([asm.xchg(size, base, R2, off), asm.stx("dw", R9, R2, 8 * k),
                asm.ldx("dw", R3, base, off), asm.stx("dw", R9, R3, 8 * k + 8)])
        k += 2
        for expect in (INIT, INIT + 1):  # a cmpxchg that succeeds, then one that fails
            a.emit(asm.ld_imm64(R1, INIT))
            a.emit([asm.stx("dw", base, R1, off)])
            a.emit(asm.ld_imm64(R0, expect))
            a.emit(asm.ld_imm64(R2, OPERAND))
            a.emit([asm.cmpxchg(size, base, R2, off), asm.stx("dw", R9, R0, 8 * k),
                    asm.ldx("dw", R3, base, off), asm.stx("dw", R9, R3, 8 * k + 8)])
            k += 2
    a.emit([asm.mov64(R0, k), asm.exit_()])
    return a.assemble(), [ARENA_RELOC]


@pytest.mark.parametrize("size", ["dw", "w"])
def test_atomics(backend, size):
    n, data = run_all(make_spec({"p": _atomic_program(size)}), backend)["p"]
    have = u64s(data, n)
    m = M64 if size == "dw" else M32
    hi = INIT & ~m & M64
    ops = {0x00: lambda x, y: (x + y) & m, 0x40: lambda x, y: x | y, 0x50: lambda x, y: x & y,
           0xA0: lambda x, y: x ^ y}
    want = []
    for _where, code, fetch in _atomic_cases(size):
        new = ops[code](INIT & m, OPERAND & m)
        want += [(INIT & m) if fetch else OPERAND, hi | new]  # 32-bit fetch zero-extends
    for where in ("arena", "stack"):
        want += [INIT & m, hi | (OPERAND & m)]  # xchg
        # cmpxchg that succeeds: r0 = old, memory = new. The kernel zero-extends a 32-bit r0,
        # except on the arena, where x86's cmpxchg leaves all of rax as it was (= INIT)
        want += [INIT if where == "arena" else INIT & m, hi | (OPERAND & m)]
        want += [INIT & m, INIT]  # one that fails: r0 = old (zero-extended), memory unchanged
    assert [hex(v) for v in have] == [hex(v) for v in want]


def test_load_acquire_store_release(backend):
    a = asm.Assembler()
    result_prologue(a)
    a.emit(asm.ld_imm64(R1, 0x1234567890ABCDEF))
    for k, size in enumerate(("b", "h", "w", "dw")):
        a.emit([asm.st("dw", R9, 1024 + 8 * k, 0), asm.store_release(size, R9, R1, 1024 + 8 * k),
                asm.load_acquire(size, R2, R9, 1024 + 8 * k), asm.stx("dw", R9, R2, 8 * k)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    have = u64s(run_all(make_spec({"p": (a.assemble(), [ARENA_RELOC])}), backend)["p"][1], 4)
    assert have == [0xEF, 0xCDEF, 0x90ABCDEF, 0x1234567890ABCDEF]


def test_load_acquire_from_missing_page_keeps_the_register(backend):
    """x86's fault fixup for an arena load-acquire does not clear the destination (unlike a plain
    load, which reads 0): the register keeps its old value. The kernel is the oracle."""
    a = asm.Assembler()
    result_prologue(a)  # r9 = page 0 (faulted in by run_all); page RESULT_PAGES + 1 is missing
    missing = (RESULT_PAGES + 1) * PAGE
    a.emit([asm.mov64(R8, R9), asm.add64(R8, missing)])
    for k, size in enumerate(("b", "h", "w", "dw")):
        a.emit(asm.ld_imm64(R2, 0x1122334455667788 + k))
        a.emit([asm.load_acquire(size, R2, R8, 8 * k), asm.stx("dw", R9, R2, 8 * k)])
        a.emit([asm.ldx(size, R3, R8, 8 * k), asm.stx("dw", R9, R3, 64 + 8 * k)])
    a.emit([asm.mov64(R0, 0), asm.exit_()])
    data = run_all(make_spec({"p": (a.assemble(), [ARENA_RELOC])}), backend)["p"][1]
    assert u64s(data, 4) == [0x1122334455667788 + k for k in range(4)]
    assert u64s(data[64:], 4) == [0, 0, 0, 0]  # plain loads of the same bytes read 0
