"""Instructions: one `Instruction` per 8-byte slot, fast decode/encode, and validation.

An ld_imm64 stays two slots (the second has opcode 0 and carries the upper 32 bits in imm) so
that slot indexes, jump offsets and relocation offsets all count the same way everywhere.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InvalidInstruction
from .opcodes import (
    LD_IMM64,
    MAX_REG,
    OPCODES,
    CallSrc,
    InsnClass,
    JmpOp,
    Kind,
    PseudoSrc,
)

__all__ = ["Instruction", "decode", "encode", "validate", "check_insn", "imm64", "split_imm64",
           "INSN_SIZE"]

INSN_SIZE = 8
_FMT = struct.Struct("<BBhi")
_CALL = InsnClass.JMP | JmpOp.CALL
_EXIT = InsnClass.JMP | JmpOp.EXIT
_JUMP_KINDS = frozenset({Kind.JA, Kind.GOTOL, Kind.JCOND, Kind.JMP})


@dataclass(frozen=True, slots=True)
class Instruction:
    """One 8-byte slot: opcode, dst/src registers (4 bits each), signed 16-bit off, signed
    32-bit imm."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    # -- bytes ---------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The slot's 8 little-endian bytes; InvalidInstruction if a field is out of range."""
        if not (0 <= self.opcode <= 0xFF and 0 <= self.dst <= 0xF and 0 <= self.src <= 0xF
                and -0x8000 <= self.off <= 0x7FFF and -0x80000000 <= self.imm <= 0x7FFFFFFF):
            raise InvalidInstruction(f"field out of range in {self!r}")
        return _FMT.pack(self.opcode, self.dst | (self.src << 4), self.off, self.imm)

    @classmethod
    def decode(cls, data: bytes, insn_index: int | None = None) -> Instruction:
        """One instruction from exactly 8 bytes."""
        if len(data) != INSN_SIZE:
            raise InvalidInstruction(f"an instruction is 8 bytes, got {len(data)}",
                                     insn_index=insn_index)
        op, regs, off, imm = _FMT.unpack(data)
        return cls(op, regs & 0xF, regs >> 4, off, imm)

    # -- fields --------------------------------------------------------------------------------

    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    @property
    def size(self) -> int:
        return self.opcode & 0x18

    @property
    def mode(self) -> int:
        return self.opcode & 0xE0

    @property
    def source(self) -> int:
        return self.opcode & 0x08

    @property
    def op(self) -> int:
        """The ALU/JMP operation bits."""
        return self.opcode & 0xF0

    @property
    def kind(self) -> Kind | None:
        spec = OPCODES.get(self.opcode)
        return None if spec is None else spec.kind

    # -- predicates ----------------------------------------------------------------------------

    @property
    def is_ld_imm64(self) -> bool:
        return self.opcode == LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.opcode == _CALL

    @property
    def is_helper_call(self) -> bool:
        return self.opcode == _CALL and self.src == CallSrc.HELPER

    @property
    def is_pseudo_call(self) -> bool:
        """A BPF-to-BPF call (imm is a slot offset)."""
        return self.opcode == _CALL and self.src == CallSrc.PSEUDO_CALL

    @property
    def is_kfunc_call(self) -> bool:
        return self.opcode == _CALL and self.src == CallSrc.KFUNC_CALL

    @property
    def is_exit(self) -> bool:
        return self.opcode == _EXIT

    @property
    def is_jump(self) -> bool:
        """A jump within the function: ja, gotol, may_goto or a conditional jump (not calls)."""
        spec = OPCODES.get(self.opcode)
        return spec is not None and spec.kind in _JUMP_KINDS

    @property
    def is_pseudo_func(self) -> bool:
        """An ld_imm64 of a subprogram's address (imm is a slot offset)."""
        return self.opcode == LD_IMM64 and self.src == PseudoSrc.FUNC

    def jump_target(self, index: int) -> int | None:
        """The slot this instruction at `index` transfers to (jumps, pseudo calls, ld_imm64 of
        a function), or None if it does not name one."""
        spec = OPCODES.get(self.opcode)
        if spec is None:
            return None
        kind = spec.kind
        if kind in (Kind.JA, Kind.JCOND, Kind.JMP):
            return index + self.off + 1
        if kind == Kind.GOTOL:
            return index + self.imm + 1
        if kind == Kind.CALL and self.src == CallSrc.PSEUDO_CALL:
            return index + self.imm + 1
        if kind == Kind.LD_IMM64 and self.src == PseudoSrc.FUNC:
            return index + self.imm + 1
        return None

    def replace(self, **changes: int) -> Instruction:
        """A copy with some fields changed (relocation and label fix-ups use this)."""
        fields = {"opcode": self.opcode, "dst": self.dst, "src": self.src, "off": self.off,
                  "imm": self.imm}
        fields.update(changes)
        return Instruction(**fields)

    def __str__(self) -> str:
        from .disasm import format_insn

        return format_insn(self)


def imm64(lo: int, hi: int) -> int:
    """The unsigned 64-bit value of an ld_imm64 pair from its two (signed 32-bit) imm fields."""
    return ((hi & 0xFFFFFFFF) << 32) | (lo & 0xFFFFFFFF)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def split_imm64(value: int) -> tuple[int, int]:
    """The two signed 32-bit imm fields (lo, hi) that carry a 64-bit value (signed or not)."""
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"{value} does not fit in 64 bits")
    return _s32(value), _s32(value >> 32)


def decode(data: bytes | bytearray | memoryview) -> list[Instruction]:
    """All slots of a program's bytes; the length must be a multiple of 8."""
    n = len(data)
    if n % INSN_SIZE:
        raise InvalidInstruction(
            f"program length {n} is not a multiple of {INSN_SIZE} (trailing {n % INSN_SIZE} bytes)",
            insn_index=n // INSN_SIZE)
    new = Instruction
    return [new(op, regs & 0xF, regs >> 4, off, imm)
            for op, regs, off, imm in _FMT.iter_unpack(data)]


def encode(insns: Iterable[Instruction]) -> bytes:
    """The bytes of a sequence of slots."""
    out = []
    for i, insn in enumerate(insns):
        try:
            out.append(insn.encode())
        except InvalidInstruction as e:
            raise InvalidInstruction(str(e.args[0]), insn_index=i) from None
        except AttributeError:
            raise InvalidInstruction(f"not an Instruction: {insn!r}", insn_index=i) from None
    return b"".join(out)


def check_insn(insn: Instruction) -> str | None:
    """Why one slot (looked at alone) is invalid, or None. Pairing and targets are not checked."""
    if insn.dst > MAX_REG or insn.dst < 0:
        return f"invalid dst register r{insn.dst}"
    if insn.src > MAX_REG or insn.src < 0:
        return f"invalid src register r{insn.src}"
    spec = OPCODES.get(insn.opcode)
    if spec is None:
        return f"unknown opcode 0x{insn.opcode:02x}"
    if spec.accepts(insn.dst, insn.src, insn.off, insn.imm):
        return None
    if spec.kind == Kind.MOV and insn.off == 1 and insn.cls == InsnClass.ALU64:
        return (f"bad addr_space_cast imm 0x{insn.imm & 0xFFFFFFFF:x} "
                "(only 0x1, cast to kernel, and 0x10000, cast to user, exist)")
    reasons = [r for f in spec.forms if (r := f.why_not(insn.dst, insn.src, insn.off, insn.imm))]
    return f"{spec.name} (opcode 0x{insn.opcode:02x}) uses reserved fields: {reasons[0]}"


def validate(insns: Sequence[Instruction], *, calls: bool = True) -> None:
    """Check a program's slots as the kernel does before verification: known opcodes, register
    numbers, reserved fields, complete ld_imm64 pairs and in-range jump targets that do not land
    inside an ld_imm64. Raises InvalidInstruction naming the first bad index.

    calls=False skips the targets of pseudo calls and ld_imm64 function pointers: in an
    unlinked ELF section they point into other sections through relocations."""
    n = len(insns)
    second = bytearray(n)  # 1 where a slot is the upper half of an ld_imm64
    i = 0
    while i < n:
        insn = insns[i]
        if not isinstance(insn, Instruction):
            raise InvalidInstruction(f"not an Instruction: {insn!r}", insn_index=i)
        why = check_insn(insn)
        if why is not None:
            raise InvalidInstruction(why, insn_index=i)
        if insn.opcode == LD_IMM64:
            if i + 1 >= n:
                raise InvalidInstruction("ld_imm64 is missing its second slot", insn_index=i)
            nxt = insns[i + 1]
            if not isinstance(nxt, Instruction) or (nxt.opcode, nxt.dst, nxt.src, nxt.off) != (
                    0, 0, 0, 0):
                raise InvalidInstruction("invalid second slot of ld_imm64 (must be opcode 0 "
                                         "with dst, src and off 0)", insn_index=i + 1)
            if insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX) and nxt.imm != 0:
                raise InvalidInstruction("ld_imm64 of a map fd/index has a non-zero upper imm",
                                         insn_index=i + 1)
            second[i + 1] = 1
            i += 2
        else:
            i += 1
    for i, insn in enumerate(insns):
        if second[i]:
            continue
        t = insn.jump_target(i)
        if t is None or (not calls and (insn.is_pseudo_call or insn.is_pseudo_func)):
            continue
        if not 0 <= t < n:
            raise InvalidInstruction(f"jump target {t} out of range 0..{n - 1}", insn_index=i)
        if second[t]:
            raise InvalidInstruction(f"jump target {t} is the middle of an ld_imm64",
                                     insn_index=i)
