"""BPF opcodes as data: the field enums and ONE table of every valid instruction form.

Encodings follow RFC 9669 (BPF ISA v4) plus the Linux extensions clang-19 emits or the kernel
accepts: addr_space_cast, load-acquire/store-release, may_goto, gotol and the legacy packet loads.
The table `OPCODES` maps each valid opcode byte to the register/off/imm values it allows, so the
validator, the VM's load-time checks, the disassembler and the property tests share one truth
instead of scattered branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "InsnClass", "Size", "Mode", "Source", "AluOp", "JmpOp", "AtomicOp", "Endian",
    "PseudoSrc", "CallSrc", "Span", "Form", "OpcodeSpec", "OPCODES", "Kind",
    "SIZE_BYTES", "BYTES_SIZE", "ATOMIC_RMW_OPS", "ATOMIC_OPS",
    "BPF_PSEUDO_MAP_FD", "BPF_PSEUDO_MAP_VALUE", "BPF_PSEUDO_BTF_ID", "BPF_PSEUDO_FUNC",
    "BPF_PSEUDO_MAP_IDX", "BPF_PSEUDO_MAP_IDX_VALUE", "BPF_PSEUDO_CALL", "BPF_PSEUDO_KFUNC_CALL",
    "BPF_MAY_GOTO", "BPF_ADDR_SPACE_CAST", "BPF_ADDR_PERCPU", "CAST_KERN_IMM", "CAST_USER_IMM",
    "MAX_REG", "LD_IMM64",
    "op_class", "op_size", "op_mode", "op_source", "op_code",
]

MAX_REG = 10  # r0..r10; r10 is the read-only frame pointer


class InsnClass(IntEnum):
    """Low 3 bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Size(IntEnum):
    """Bits 3-4 of a load/store opcode."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18


SIZE_BYTES: dict[Size, int] = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
BYTES_SIZE: dict[int, Size] = {v: k for k, v in SIZE_BYTES.items()}


class Mode(IntEnum):
    """Bits 5-7 of a load/store opcode."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class Source(IntEnum):
    """Bit 3 of an ALU/JMP opcode: immediate (K) or register (X) operand."""

    K = 0x00
    X = 0x08


class Endian(IntEnum):
    """The source bit of ALU|END: to little- or big-endian (ALU64|END|K is bswap)."""

    TO_LE = 0x00
    TO_BE = 0x08


class AluOp(IntEnum):
    """Bits 4-7 of an ALU/ALU64 opcode. SDIV/SMOD are DIV/MOD with off=1; MOVSX is MOV with
    off 8/16/32; BSWAP is ALU64|END|K."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpOp(IntEnum):
    """Bits 4-7 of a JMP/JMP32 opcode. JCOND with src 0 is may_goto."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0


class AtomicOp(IntEnum):
    """The imm of an STX|ATOMIC instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH = 0x01  # a flag, not an operation on its own
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


ATOMIC_RMW_OPS = frozenset({
    AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR,
    AtomicOp.FETCH_ADD, AtomicOp.FETCH_OR, AtomicOp.FETCH_AND, AtomicOp.FETCH_XOR,
    AtomicOp.XCHG, AtomicOp.CMPXCHG,
})
ATOMIC_OPS = ATOMIC_RMW_OPS | {AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL}


class PseudoSrc(IntEnum):
    """src_reg of an ld_imm64: how the loader must rewrite the 64-bit immediate."""

    NONE = 0
    MAP_FD = 1
    MAP_VALUE = 2
    BTF_ID = 3
    FUNC = 4
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class CallSrc(IntEnum):
    """src_reg of a JMP|CALL: what imm names."""

    HELPER = 0
    PSEUDO_CALL = 1  # imm = slot offset of a BPF-to-BPF call
    KFUNC_CALL = 2  # imm = BTF id of a kernel function, off = fd_array index of its BTF


BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2
BPF_MAY_GOTO = 0
BPF_ADDR_SPACE_CAST = 1  # off of ALU64|MOV|X
BPF_ADDR_PERCPU = -1  # off of ALU64|MOV|X; only the kernel itself emits it
CAST_KERN_IMM = 0x1  # addr_space_cast(dst, 0, 1): arena pointer -> kernel (low 32 bits)
CAST_USER_IMM = 0x10000  # addr_space_cast(dst, 1, 0): -> user address

LD_IMM64 = InsnClass.LD | Size.DW | Mode.IMM  # 0x18, the only two-slot instruction


def op_class(opcode: int) -> int:
    return opcode & 0x07


def op_size(opcode: int) -> int:
    return opcode & 0x18


def op_mode(opcode: int) -> int:
    return opcode & 0xE0


def op_source(opcode: int) -> int:
    return opcode & 0x08


def op_code(opcode: int) -> int:
    """The ALU/JMP operation bits (high nibble)."""
    return opcode & 0xF0


# ---------------------------------------------------------------------------------------------
# The validity table


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive integer range, optionally with holes (e.g. a non-zero divisor)."""

    lo: int
    hi: int
    exclude: frozenset[int] = frozenset()

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.lo <= value <= self.hi and value not in self.exclude


Field = Span | frozenset  # a set of allowed values for one instruction field

REG = Span(0, MAX_REG)
S16 = Span(-(1 << 15), (1 << 15) - 1)
S32 = Span(-(1 << 31), (1 << 31) - 1)
U16 = Span(0, (1 << 15) - 1)
ZERO = frozenset({0})


@dataclass(frozen=True, slots=True)
class Form:
    """One allowed shape of an opcode: the values each field may take."""

    dst: Field = REG
    src: Field = ZERO
    off: Field = ZERO
    imm: Field = ZERO

    def accepts(self, dst: int, src: int, off: int, imm: int) -> bool:
        return dst in self.dst and src in self.src and off in self.off and imm in self.imm

    def why_not(self, dst: int, src: int, off: int, imm: int) -> str | None:
        for name, value, allowed in (("dst", dst, self.dst), ("src", src, self.src),
                                     ("off", off, self.off), ("imm", imm, self.imm)):
            if value not in allowed:
                return f"{name}={value} not allowed"
        return None


class Kind(IntEnum):
    """What an opcode does, at the grain the interpreter and disassembler dispatch on."""

    ALU = 1  # binary ALU op, reg or imm
    NEG = 2
    MOV = 3  # incl. movsx and addr_space_cast (ALU64 only)
    END = 4  # byte swaps
    LD_IMM64 = 5
    LD_ABS = 6
    LD_IND = 7
    LDX = 8
    LDSX = 9
    ST = 10
    STX = 11
    ATOMIC = 12
    JA = 13
    GOTOL = 14
    JCOND = 15  # may_goto
    JMP = 16  # conditional jump
    CALL = 17
    EXIT = 18


@dataclass(frozen=True, slots=True)
class OpcodeSpec:
    """A valid opcode byte: a name for humans, its kind, and the field shapes it allows."""

    opcode: int
    name: str
    kind: Kind
    forms: tuple[Form, ...]

    def accepts(self, dst: int, src: int, off: int, imm: int) -> bool:
        return any(f.accepts(dst, src, off, imm) for f in self.forms)


def _build() -> dict[int, OpcodeSpec]:
    table: dict[int, OpcodeSpec] = {}

    def add(opcode: int, name: str, kind: Kind, *forms: Form) -> None:
        assert opcode not in table, hex(opcode)
        table[opcode] = OpcodeSpec(opcode, name, kind, forms)

    # ALU and ALU64
    for cls, suffix, shift_max in ((InsnClass.ALU, "32", 31), (InsnClass.ALU64, "64", 63)):
        for op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.OR, AluOp.AND, AluOp.XOR,
                   AluOp.LSH, AluOp.RSH, AluOp.ARSH, AluOp.DIV, AluOp.MOD):
            signed_ok = op in (AluOp.DIV, AluOp.MOD)  # off=1: sdiv/smod
            offs = frozenset({0, 1}) if signed_ok else ZERO
            if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
                kimm: Field = Span(0, shift_max)  # the kernel rejects out-of-range shifts
            elif signed_ok:
                kimm = Span(S32.lo, S32.hi, frozenset({0}))  # constant division by zero
            else:
                kimm = S32
            name = op.name.lower() + suffix
            add(cls | op | Source.K, name, Kind.ALU, Form(off=offs, imm=kimm))
            add(cls | op | Source.X, name, Kind.ALU, Form(src=REG, off=offs))
        add(cls | AluOp.NEG | Source.K, "neg" + suffix, Kind.NEG, Form())
        add(cls | AluOp.MOV | Source.K, "mov" + suffix, Kind.MOV, Form(imm=S32))
        if cls == InsnClass.ALU:
            add(cls | AluOp.MOV | Source.X, "mov32", Kind.MOV,
                Form(src=REG, off=frozenset({0, 8, 16})))
        else:
            add(cls | AluOp.MOV | Source.X, "mov64", Kind.MOV,
                Form(src=REG, off=frozenset({0, 8, 16, 32})),
                Form(src=REG, off=frozenset({BPF_ADDR_SPACE_CAST}),
                     imm=frozenset({CAST_KERN_IMM, CAST_USER_IMM})))
    widths = frozenset({16, 32, 64})
    add(InsnClass.ALU | AluOp.END | Endian.TO_LE, "le", Kind.END, Form(imm=widths))
    add(InsnClass.ALU | AluOp.END | Endian.TO_BE, "be", Kind.END, Form(imm=widths))
    add(InsnClass.ALU64 | AluOp.END | Endian.TO_LE, "bswap", Kind.END, Form(imm=widths))

    # JMP and JMP32
    for cls, suffix in ((InsnClass.JMP, ""), (InsnClass.JMP32, "32")):
        for op in (JmpOp.JEQ, JmpOp.JGT, JmpOp.JGE, JmpOp.JSET, JmpOp.JNE, JmpOp.JSGT,
                   JmpOp.JSGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSLT, JmpOp.JSLE):
            name = op.name.lower() + suffix
            add(cls | op | Source.K, name, Kind.JMP, Form(off=S16, imm=S32))
            add(cls | op | Source.X, name, Kind.JMP, Form(src=REG, off=S16))
    add(InsnClass.JMP | JmpOp.JA, "ja", Kind.JA, Form(dst=ZERO, off=S16))
    add(InsnClass.JMP32 | JmpOp.JA, "gotol", Kind.GOTOL, Form(dst=ZERO, imm=S32))
    add(InsnClass.JMP | JmpOp.JCOND, "may_goto", Kind.JCOND,
        Form(dst=ZERO, src=frozenset({BPF_MAY_GOTO}), off=S16))
    add(InsnClass.JMP | JmpOp.CALL, "call", Kind.CALL,
        Form(dst=ZERO, src=frozenset({CallSrc.HELPER}), imm=S32),
        Form(dst=ZERO, src=frozenset({CallSrc.PSEUDO_CALL}), imm=S32),
        Form(dst=ZERO, src=frozenset({CallSrc.KFUNC_CALL}), off=U16, imm=S32))
    add(InsnClass.JMP | JmpOp.EXIT, "exit", Kind.EXIT, Form(dst=ZERO))

    # loads and stores
    add(LD_IMM64, "ld_imm64", Kind.LD_IMM64, Form(src=frozenset(PseudoSrc), imm=S32))
    for size in (Size.W, Size.H, Size.B):
        sname = size.name.lower()
        add(InsnClass.LD | Mode.ABS | size, "ld_abs_" + sname, Kind.LD_ABS,
            Form(dst=ZERO, imm=S32))
        add(InsnClass.LD | Mode.IND | size, "ld_ind_" + sname, Kind.LD_IND,
            Form(dst=ZERO, src=REG, imm=S32))
        add(InsnClass.LDX | Mode.MEMSX | size, "ldxs" + sname, Kind.LDSX,
            Form(src=REG, off=S16))
    rmw = frozenset(int(op) for op in ATOMIC_RMW_OPS)
    acq_rel = frozenset({AtomicOp.LOAD_ACQ.value, AtomicOp.STORE_REL.value})
    for size in Size:
        sname = size.name.lower()
        add(InsnClass.LDX | Mode.MEM | size, "ldx" + sname, Kind.LDX, Form(src=REG, off=S16))
        add(InsnClass.ST | Mode.MEM | size, "st" + sname, Kind.ST, Form(off=S16, imm=S32))
        add(InsnClass.STX | Mode.MEM | size, "stx" + sname, Kind.STX, Form(src=REG, off=S16))
        imms = rmw | acq_rel if size in (Size.W, Size.DW) else acq_rel
        add(InsnClass.STX | Mode.ATOMIC | size, "atomic_" + sname, Kind.ATOMIC,
            Form(src=REG, off=S16, imm=frozenset(imms)))
    return table


OPCODES: dict[int, OpcodeSpec] = _build()
"""Every valid opcode byte -> its spec. An opcode absent here is invalid."""
