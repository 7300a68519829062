"""A disassembler printing the kernel verifier's syntax (kernel/bpf/disasm.c), so our listings
read like the verifier logs users compare them with.

Differences, chosen for clarity where the kernel prints only numbers: a plain ld_imm64 ends in
` ll` (as LLVM writes it); pseudo ld_imm64 values print as `map[fd:N]`, `map[fd:N][0]+off`,
`map[idx:N]`, `map[idx:N][0]+off`, `btf_id[N]` and `subprog[+N]`. The kernel's `(%02x)` opcode
prefix is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .helpers import HELPER_NAMES
from .insn import Instruction, imm64
from .opcodes import (
    BPF_ADDR_PERCPU,
    BPF_ADDR_SPACE_CAST,
    OPCODES,
    AluOp,
    AtomicOp,
    CallSrc,
    InsnClass,
    Kind,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

__all__ = ["format_insn", "disassemble"]

_ALU = {AluOp.ADD: "+=", AluOp.SUB: "-=", AluOp.MUL: "*=", AluOp.DIV: "/=", AluOp.OR: "|=",
        AluOp.AND: "&=", AluOp.LSH: "<<=", AluOp.RSH: ">>=", AluOp.MOD: "%=", AluOp.XOR: "^=",
        AluOp.MOV: "=", AluOp.ARSH: "s>>="}
_SIGNED_ALU = {AluOp.DIV: "s/=", AluOp.MOD: "s%="}
_JMP = {0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>", 0x70: "s>=",
        0xA0: "<", 0xB0: "<=", 0xC0: "s<", 0xD0: "s<="}
_U = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}
_S = {Size.B: "s8", Size.H: "s16", Size.W: "s32"}
_ATOMIC_ALU = {AtomicOp.ADD: ("+=", "add"), AtomicOp.AND: ("&=", "and"),
               AtomicOp.OR: ("|=", "or"), AtomicOp.XOR: ("^=", "xor")}


def _helper(imm: int) -> str:
    name = HELPER_NAMES.get(imm)
    return f"bpf_{name}" if name is not None else "unknown"


def _ld_imm64(insn: Instruction, nxt: Instruction | None) -> str:
    dst = f"r{insn.dst}"
    if nxt is None:
        return f"{dst} = <ld_imm64 missing its second slot, low 0x{insn.imm & 0xFFFFFFFF:x}>"
    src, lo, hi = insn.src, insn.imm & 0xFFFFFFFF, nxt.imm & 0xFFFFFFFF
    if src == PseudoSrc.MAP_FD:
        return f"{dst} = map[fd:{lo}]"
    if src == PseudoSrc.MAP_VALUE:
        return f"{dst} = map[fd:{lo}][0]+{hi}"
    if src == PseudoSrc.MAP_IDX:
        return f"{dst} = map[idx:{lo}]"
    if src == PseudoSrc.MAP_IDX_VALUE:
        return f"{dst} = map[idx:{lo}][0]+{hi}"
    if src == PseudoSrc.BTF_ID:
        return f"{dst} = btf_id[{lo}]"
    if src == PseudoSrc.FUNC:
        return f"{dst} = subprog[{insn.imm:+d}]"
    return f"{dst} = 0x{imm64(insn.imm, nxt.imm):x} ll"


def _alu(insn: Instruction, spec_kind: Kind) -> str:
    w = "w" if insn.cls == InsnClass.ALU else "r"
    op = insn.op
    if spec_kind == Kind.END:
        if insn.cls == InsnClass.ALU64:
            return f"r{insn.dst} = bswap{insn.imm} r{insn.dst}"
        order = "be" if insn.source == Source.X else "le"
        return f"r{insn.dst} = {order}{insn.imm} r{insn.dst}"
    if spec_kind == Kind.NEG:
        return f"{w}{insn.dst} = -{w}{insn.dst}"
    x = insn.source == Source.X
    if op == AluOp.MOV and x and insn.cls == InsnClass.ALU64:
        if insn.off == BPF_ADDR_SPACE_CAST:
            return (f"r{insn.dst} = addr_space_cast(r{insn.src}, "
                    f"{(insn.imm & 0xFFFFFFFF) >> 16}, {insn.imm & 0xFFFF})")
        if insn.off == BPF_ADDR_PERCPU:
            return f"r{insn.dst} = &(void __percpu *)(r{insn.src})"
    sym = _SIGNED_ALU[op] if (op in _SIGNED_ALU and insn.off == 1) else _ALU[op]
    if x:
        sx = f"(s{insn.off})" if op == AluOp.MOV and insn.off in (8, 16, 32) else ""
        return f"{w}{insn.dst} {sym} {sx}{w}{insn.src}"
    return f"{w}{insn.dst} {sym} {insn.imm}"


def _stx_atomic(insn: Instruction) -> str:
    size = Size(insn.size)
    mem = f"({_U[size]} *)(r{insn.dst} {insn.off:+d})"
    imm = insn.imm
    bits = "64" if size == Size.DW else ""
    if imm in _ATOMIC_ALU:
        return f"lock *{mem} {_ATOMIC_ALU[imm][0]} r{insn.src}"
    if imm & ~AtomicOp.FETCH in _ATOMIC_ALU and imm & AtomicOp.FETCH:
        name = _ATOMIC_ALU[imm & ~AtomicOp.FETCH][1]
        return f"r{insn.src} = atomic{bits}_fetch_{name}({mem}, r{insn.src})"
    if imm == AtomicOp.CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg({mem}, r0, r{insn.src})"
    if imm == AtomicOp.XCHG:
        return f"r{insn.src} = atomic{bits}_xchg({mem}, r{insn.src})"
    if imm == AtomicOp.LOAD_ACQ:
        return f"r{insn.dst} = load_acquire(({_U[size]} *)(r{insn.src} {insn.off:+d}))"
    if imm == AtomicOp.STORE_REL:
        return f"store_release({mem}, r{insn.src})"
    return f"<invalid atomic op 0x{imm & 0xFFFFFFFF:x}>"


def _jmp(insn: Instruction, kind: Kind) -> str:
    if kind == Kind.CALL:
        if insn.src == CallSrc.PSEUDO_CALL:
            return f"call pc{insn.imm:+d}"
        if insn.src == CallSrc.KFUNC_CALL:
            return f"call kernel-function#{insn.imm}"
        return f"call {_helper(insn.imm)}#{insn.imm}"
    if kind == Kind.JA:
        return f"goto pc{insn.off:+d}"
    if kind == Kind.GOTOL:
        return f"gotol pc{insn.imm:+d}"
    if kind == Kind.JCOND:
        return f"may_goto pc{insn.off:+d}"
    if kind == Kind.EXIT:
        return "exit"
    w = "w" if insn.cls == InsnClass.JMP32 else "r"
    sym = _JMP[insn.op]
    if insn.source == Source.X:
        return f"if {w}{insn.dst} {sym} {w}{insn.src} goto pc{insn.off:+d}"
    return f"if {w}{insn.dst} {sym} 0x{insn.imm & 0xFFFFFFFF:x} goto pc{insn.off:+d}"


def format_insn(insn: Instruction, next_insn: Instruction | None = None) -> str:
    """One instruction in verifier syntax; an ld_imm64 needs its second slot as `next_insn`.
    Never raises: an invalid opcode prints as such."""
    spec = OPCODES.get(insn.opcode)
    if spec is None:
        return f"<invalid opcode 0x{insn.opcode:02x}>"
    kind = spec.kind
    if kind in (Kind.ALU, Kind.NEG, Kind.MOV, Kind.END):
        return _alu(insn, kind)
    if kind in (Kind.JA, Kind.GOTOL, Kind.JCOND, Kind.JMP, Kind.CALL, Kind.EXIT):
        return _jmp(insn, kind)
    if kind == Kind.LD_IMM64:
        return _ld_imm64(insn, next_insn)
    size = Size(insn.size)
    if kind == Kind.LD_ABS:
        return f"r0 = *({_U[size]} *)skb[{insn.imm}]"
    if kind == Kind.LD_IND:
        return f"r0 = *({_U[size]} *)skb[r{insn.src} + {insn.imm}]"
    if kind in (Kind.LDX, Kind.LDSX):
        t = _U[size] if insn.mode == Mode.MEM else _S[size]
        return f"r{insn.dst} = *({t} *)(r{insn.src} {insn.off:+d})"
    if kind == Kind.ST:
        return f"*({_U[size]} *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
    if kind == Kind.STX:
        return f"*({_U[size]} *)(r{insn.dst} {insn.off:+d}) = r{insn.src}"
    return _stx_atomic(insn)


def disassemble(insns: Sequence[Instruction], with_index: bool = True) -> list[str]:
    """One line per instruction (an ld_imm64's two slots make one line, and the index then
    skips one, as in the verifier log)."""
    lines = []
    i, n = 0, len(insns)
    while i < n:
        insn = insns[i]
        wide = insn.is_ld_imm64
        text = format_insn(insn, insns[i + 1] if wide and i + 1 < n else None)
        lines.append(f"{i}: {text}" if with_index else text)
        i += 2 if wide else 1
    return lines
