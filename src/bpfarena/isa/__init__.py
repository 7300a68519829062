"""The BPF instruction set as data: opcodes, instructions, an assembler and a disassembler.

Pure: no system calls, nothing but bytes in and out.
"""

from __future__ import annotations

from .asm import FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Assembler, Reg
from .disasm import disassemble, format_insn
from .helpers import HELPER_NAMES, Helper, helper_id, helper_name
from .insn import Instruction, decode, encode, imm64, split_imm64, validate
from .opcodes import (
    OPCODES,
    AluOp,
    AtomicOp,
    CallSrc,
    Endian,
    InsnClass,
    JmpOp,
    Kind,
    Mode,
    OpcodeSpec,
    PseudoSrc,
    Size,
    Source,
)

__all__ = [
    "Instruction", "decode", "encode", "validate", "imm64", "split_imm64",
    "Assembler", "Reg", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "FP",
    "disassemble", "format_insn",
    "OPCODES", "OpcodeSpec", "Kind", "InsnClass", "Size", "Mode", "Source", "AluOp", "JmpOp",
    "AtomicOp", "Endian", "PseudoSrc", "CallSrc",
    "HELPER_NAMES", "Helper", "helper_id", "helper_name",
]
