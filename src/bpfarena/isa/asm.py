"""An assembler DSL: build BPF programs in Python, with labels.

Free functions return one `Instruction` (or a list of two for ld_imm64). Where an operand may be
a register or an immediate, it is a register only if it is a `Reg` (R0..R10); a plain int is an
immediate. Sizes are a `Size`, a byte count (1, 2, 4, 8) or a name ("b", "h", "w", "dw", "u32").

`Assembler` has methods of the same names that append, and accepts label names wherever a jump
or call target goes; `assemble()` resolves them to slot offsets (an ld_imm64 counts two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any

from ..errors import AssemblerError
from .helpers import helper_id
from .insn import Instruction, split_imm64
from .opcodes import (
    BYTES_SIZE,
    CAST_KERN_IMM,
    CAST_USER_IMM,
    LD_IMM64,
    AluOp,
    AtomicOp,
    CallSrc,
    Endian,
    InsnClass,
    JmpOp,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

__all__ = [
    "Reg", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "FP",
    "Assembler", "Insns",
    "mov64", "mov32", "movsx64", "movsx32", "alu64", "alu32",
    "add64", "sub64", "mul64", "div64", "sdiv64", "mod64", "smod64", "or64", "and64", "lsh64",
    "rsh64", "arsh64", "xor64", "neg64",
    "add32", "sub32", "mul32", "div32", "sdiv32", "mod32", "smod32", "or32", "and32", "lsh32",
    "rsh32", "arsh32", "xor32", "neg32",
    "endian", "be", "le", "bswap",
    "ldx", "ldsx", "stx", "st",
    "atomic", "atomic_add", "atomic_and", "atomic_or", "atomic_xor", "xchg", "cmpxchg",
    "load_acquire", "store_release",
    "ld_imm64", "ld_map_fd", "ld_map_value", "ld_map_idx", "ld_map_idx_value", "ld_btf_id",
    "ld_func", "ld_abs", "ld_ind",
    "ja", "gotol", "may_goto", "jmp", "jmp32",
    "jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset",
    "jeq32", "jne32", "jgt32", "jge32", "jlt32", "jle32", "jsgt32", "jsge32", "jslt32",
    "jsle32", "jset32",
    "call_helper", "call_kfunc", "call_local", "addr_space_cast", "cast_kern", "cast_user",
    "exit_",
]


class Reg(IntEnum):
    """A register operand. Only a Reg (not a plain int) makes an operand a register."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg
FP = R10

Insns = Instruction | list[Instruction]

_SIZE_NAMES = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW,
               "u8": Size.B, "u16": Size.H, "u32": Size.W, "u64": Size.DW}


def _reg(r: Any, what: str = "register") -> int:
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 10:
        raise AssemblerError(f"invalid {what} {r!r} (want R0..R10)")
    return int(r)


def _size(size: Any) -> Size:
    if isinstance(size, Size):
        return size
    if isinstance(size, str) and size.lower() in _SIZE_NAMES:
        return _SIZE_NAMES[size.lower()]
    if isinstance(size, int) and not isinstance(size, bool) and size in BYTES_SIZE:
        return BYTES_SIZE[size]
    raise AssemblerError(f"invalid size {size!r} (want Size.B/H/W/DW, 1/2/4/8 or 'b'/'h'/'w'/'dw')")


def _s16(v: Any, what: str = "offset") -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not -0x8000 <= v <= 0x7FFF:
        raise AssemblerError(f"{what} {v!r} does not fit in a signed 16-bit field")
    return int(v)


def _imm32(v: Any, what: str = "immediate") -> int:
    """A signed 32-bit imm; unsigned 32-bit values are accepted and reinterpreted."""
    if isinstance(v, bool) or not isinstance(v, int) or not -0x80000000 <= v <= 0xFFFFFFFF:
        raise AssemblerError(f"{what} {v!r} does not fit in 32 bits")
    v = int(v)
    return v - (1 << 32) if v > 0x7FFFFFFF else v


def _op(op: Any, enum: type[IntEnum]) -> int:
    if isinstance(op, str):
        try:
            return enum[op.upper()]
        except KeyError:
            raise AssemblerError(f"unknown {enum.__name__} {op!r}") from None
    try:
        return enum(op)
    except ValueError:
        raise AssemblerError(f"unknown {enum.__name__} {op!r}") from None


# -- ALU ---------------------------------------------------------------------------------------

def _alu(cls: int, op: int, dst: Any, src: Any, off: int = 0) -> Instruction:
    d = _reg(dst, "dst register")
    if isinstance(src, Reg):
        return Instruction(cls | op | Source.X, d, int(src), off, 0)
    return Instruction(cls | op | Source.K, d, 0, off, _imm32(src))


def alu64(op: AluOp | str, dst: Any, src: Any) -> Instruction:
    """A 64-bit ALU operation `dst op= src` (src a Reg or an immediate)."""
    return _alu(InsnClass.ALU64, _op(op, AluOp), dst, src)


def alu32(op: AluOp | str, dst: Any, src: Any) -> Instruction:
    """A 32-bit ALU operation `wdst op= src`; the result is zero-extended."""
    return _alu(InsnClass.ALU, _op(op, AluOp), dst, src)


def _named(cls: int, op: AluOp, off: int = 0) -> Callable[[Any, Any], Instruction]:
    def f(dst: Any, src: Any) -> Instruction:
        return _alu(cls, op, dst, src, off)

    bits = "64" if cls == InsnClass.ALU64 else "32"
    f.__name__ = f.__qualname__ = ("s" if off else "") + op.name.lower() + bits
    f.__doc__ = f"{'signed ' if off else ''}{op.name.lower()} ({bits}-bit): dst op= src|imm"
    return f


add64, sub64, mul64, div64, mod64, or64, and64, lsh64, rsh64, arsh64, xor64 = (
    _named(InsnClass.ALU64, op) for op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.MOD,
                                           AluOp.OR, AluOp.AND, AluOp.LSH, AluOp.RSH, AluOp.ARSH,
                                           AluOp.XOR))
add32, sub32, mul32, div32, mod32, or32, and32, lsh32, rsh32, arsh32, xor32 = (
    _named(InsnClass.ALU, op) for op in (AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.MOD,
                                         AluOp.OR, AluOp.AND, AluOp.LSH, AluOp.RSH, AluOp.ARSH,
                                         AluOp.XOR))
sdiv64 = _named(InsnClass.ALU64, AluOp.DIV, 1)
smod64 = _named(InsnClass.ALU64, AluOp.MOD, 1)
sdiv32 = _named(InsnClass.ALU, AluOp.DIV, 1)
smod32 = _named(InsnClass.ALU, AluOp.MOD, 1)


def neg64(dst: Any) -> Instruction:
    return Instruction(InsnClass.ALU64 | AluOp.NEG, _reg(dst), 0, 0, 0)


def neg32(dst: Any) -> Instruction:
    return Instruction(InsnClass.ALU | AluOp.NEG, _reg(dst), 0, 0, 0)


def mov64(dst: Any, src: Any) -> Instruction:
    """`dst = src` (a Reg) or `dst = imm` (sign-extended to 64 bits)."""
    return _alu(InsnClass.ALU64, AluOp.MOV, dst, src)


def mov32(dst: Any, src: Any) -> Instruction:
    """`wdst = wsrc` or `wdst = imm`; the upper half is zeroed."""
    return _alu(InsnClass.ALU, AluOp.MOV, dst, src)


def movsx64(dst: Any, src: Any, bits: int) -> Instruction:
    """`dst = (s8|s16|s32)src`: sign-extend the low `bits` of src to 64 bits."""
    if bits not in (8, 16, 32):
        raise AssemblerError(f"movsx64 extends from 8, 16 or 32 bits, not {bits!r}")
    return Instruction(InsnClass.ALU64 | AluOp.MOV | Source.X, _reg(dst), _reg(src), bits, 0)


def movsx32(dst: Any, src: Any, bits: int) -> Instruction:
    """`wdst = (s8|s16)wsrc`."""
    if bits not in (8, 16):
        raise AssemblerError(f"movsx32 extends from 8 or 16 bits, not {bits!r}")
    return Instruction(InsnClass.ALU | AluOp.MOV | Source.X, _reg(dst), _reg(src), bits, 0)


def endian(dst: Any, bits: int, order: str) -> Instruction:
    """`dst = be16 dst` etc.: order "be" or "le" converts from host (little-endian) order,
    "bswap" swaps unconditionally (ALU64|END)."""
    if bits not in (16, 32, 64):
        raise AssemblerError(f"byte swaps are 16, 32 or 64 bits, not {bits!r}")
    code = {"le": InsnClass.ALU | AluOp.END | Endian.TO_LE,
            "be": InsnClass.ALU | AluOp.END | Endian.TO_BE,
            "bswap": InsnClass.ALU64 | AluOp.END | Endian.TO_LE}.get(order)
    if code is None:
        raise AssemblerError(f"byte order {order!r} is not 'be', 'le' or 'bswap'")
    return Instruction(code, _reg(dst), 0, 0, bits)


def be(dst: Any, bits: int) -> Instruction:
    return endian(dst, bits, "be")


def le(dst: Any, bits: int) -> Instruction:
    return endian(dst, bits, "le")


def bswap(dst: Any, bits: int) -> Instruction:
    return endian(dst, bits, "bswap")


def addr_space_cast(dst: Any, src: Any, dst_as: int, src_as: int) -> Instruction:
    """`dst = addr_space_cast(src, dst_as, src_as)`: (0, 1) casts an arena pointer to its kernel
    form, (1, 0) to its user form; no other pair exists."""
    imm = ((dst_as & 0xFFFF) << 16) | (src_as & 0xFFFF)
    if imm not in (CAST_KERN_IMM, CAST_USER_IMM) or not (0 <= dst_as <= 1 and 0 <= src_as <= 1):
        raise AssemblerError(f"addr_space_cast converts between address spaces 1 and 0, not "
                             f"from {src_as} to {dst_as}")
    return Instruction(InsnClass.ALU64 | AluOp.MOV | Source.X, _reg(dst), _reg(src), 1, imm)


def cast_kern(dst: Any, src: Any) -> Instruction:
    return addr_space_cast(dst, src, 0, 1)


def cast_user(dst: Any, src: Any) -> Instruction:
    return addr_space_cast(dst, src, 1, 0)


# -- memory ------------------------------------------------------------------------------------

def ldx(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`dst = *(uN *)(src + off)`, zero-extended."""
    return Instruction(InsnClass.LDX | Mode.MEM | _size(size), _reg(dst), _reg(src), _s16(off), 0)


def ldsx(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`dst = *(sN *)(src + off)`, sign-extended (8, 16 or 32 bits)."""
    s = _size(size)
    if s == Size.DW:
        raise AssemblerError("a sign-extending load is 1, 2 or 4 bytes")
    return Instruction(InsnClass.LDX | Mode.MEMSX | s, _reg(dst), _reg(src), _s16(off), 0)


def stx(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`*(uN *)(dst + off) = src`."""
    return Instruction(InsnClass.STX | Mode.MEM | _size(size), _reg(dst), _reg(src), _s16(off), 0)


def st(size: Any, dst: Any, off: int, imm: int) -> Instruction:
    """`*(uN *)(dst + off) = imm`."""
    return Instruction(InsnClass.ST | Mode.MEM | _size(size), _reg(dst), 0, _s16(off),
                       _imm32(imm))


def atomic(size: Any, op: AtomicOp | str | int, dst: Any, src: Any, off: int = 0) -> Instruction:
    """Any STX|ATOMIC instruction with `imm = op` on `*(dst + off)`."""
    s = _size(size)
    code = _op(op, AtomicOp)
    if code not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL) and s not in (Size.W, Size.DW):
        raise AssemblerError("atomic read-modify-write operations are 4 or 8 bytes")
    return Instruction(InsnClass.STX | Mode.ATOMIC | s, _reg(dst), _reg(src), _s16(off), code)


def _rmw(op: AtomicOp) -> Callable[..., Instruction]:
    def f(size: Any, dst: Any, src: Any, off: int = 0, *, fetch: bool = False) -> Instruction:
        return atomic(size, op | (AtomicOp.FETCH if fetch else 0), dst, src, off)

    f.__name__ = f.__qualname__ = "atomic_" + op.name.lower()
    f.__doc__ = (f"`lock *(dst + off) {op.name.lower()}= src`; with fetch=True the old value "
                 "goes to src")
    return f


atomic_add = _rmw(AtomicOp.ADD)
atomic_or = _rmw(AtomicOp.OR)
atomic_and = _rmw(AtomicOp.AND)
atomic_xor = _rmw(AtomicOp.XOR)


def xchg(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`src = xchg(*(dst + off), src)`."""
    return atomic(size, AtomicOp.XCHG, dst, src, off)


def cmpxchg(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`r0 = cmpxchg(*(dst + off), r0, src)`."""
    return atomic(size, AtomicOp.CMPXCHG, dst, src, off)


def load_acquire(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`dst = load_acquire(*(src + off))`."""
    return atomic(size, AtomicOp.LOAD_ACQ, dst, src, off)


def store_release(size: Any, dst: Any, src: Any, off: int = 0) -> Instruction:
    """`store_release(*(dst + off), src)`."""
    return atomic(size, AtomicOp.STORE_REL, dst, src, off)


def ld_imm64(dst: Any, value: int, src: int = 0) -> list[Instruction]:
    """The two slots of `dst = value` (a 64-bit constant, or a pseudo value when src != 0)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AssemblerError(f"ld_imm64 value {value!r} is not an int")
    try:
        lo, hi = split_imm64(value)
    except ValueError as e:
        raise AssemblerError(str(e)) from None
    if src not in PseudoSrc.__members__.values():
        raise AssemblerError(f"invalid ld_imm64 src {src!r}")
    return [Instruction(LD_IMM64, _reg(dst), int(src), 0, lo), Instruction(0, 0, 0, 0, hi)]


def _pair(dst: Any, src: int, lo: int, hi: int) -> list[Instruction]:
    return [Instruction(LD_IMM64, _reg(dst), src, 0, _imm32(lo)), Instruction(0, 0, 0, 0,
                                                                              _imm32(hi))]


def ld_map_fd(dst: Any, fd: int) -> list[Instruction]:
    """`dst = map[fd]`: the loader or kernel turns a map fd into a map pointer."""
    return _pair(dst, PseudoSrc.MAP_FD, fd, 0)


def ld_map_value(dst: Any, fd: int, off: int = 0) -> list[Instruction]:
    """`dst = &map[fd].value + off` (array maps: .data, .bss, .rodata)."""
    return _pair(dst, PseudoSrc.MAP_VALUE, fd, off)


def ld_map_idx(dst: Any, idx: int) -> list[Instruction]:
    return _pair(dst, PseudoSrc.MAP_IDX, idx, 0)


def ld_map_idx_value(dst: Any, idx: int, off: int = 0) -> list[Instruction]:
    return _pair(dst, PseudoSrc.MAP_IDX_VALUE, idx, off)


def ld_btf_id(dst: Any, btf_id: int, btf_fd: int = 0) -> list[Instruction]:
    """`dst = &ksym` for a kernel variable named by BTF id (hi carries a module BTF fd)."""
    return _pair(dst, PseudoSrc.BTF_ID, btf_id, btf_fd)


def ld_func(dst: Any, offset: int) -> list[Instruction]:
    """`dst = &subprog` where the subprogram starts `offset` slots after this instruction's
    first slot plus one (like a pseudo call)."""
    return _pair(dst, PseudoSrc.FUNC, offset, 0)


def ld_abs(size: Any, imm: int) -> Instruction:
    """Legacy packet load `r0 = ntoh(*(uN *)skb[imm])`."""
    s = _size(size)
    if s == Size.DW:
        raise AssemblerError("legacy packet loads are 1, 2 or 4 bytes")
    return Instruction(InsnClass.LD | Mode.ABS | s, 0, 0, 0, _imm32(imm))


def ld_ind(size: Any, src: Any, imm: int) -> Instruction:
    """Legacy packet load `r0 = ntoh(*(uN *)skb[src + imm])`."""
    s = _size(size)
    if s == Size.DW:
        raise AssemblerError("legacy packet loads are 1, 2 or 4 bytes")
    return Instruction(InsnClass.LD | Mode.IND | s, 0, _reg(src), 0, _imm32(imm))


# -- control flow ------------------------------------------------------------------------------

def ja(off: int) -> Instruction:
    """`goto pc+off` (16-bit offset)."""
    return Instruction(InsnClass.JMP | JmpOp.JA, 0, 0, _s16(off), 0)


def gotol(off: int) -> Instruction:
    """`gotol pc+off` (32-bit offset in imm; JMP32|JA)."""
    return Instruction(InsnClass.JMP32 | JmpOp.JA, 0, 0, 0, _imm32(off, "gotol offset"))


def may_goto(off: int) -> Instruction:
    """`may_goto pc+off`: the kernel-bounded loop escape (JMP|JCOND, src 0)."""
    return Instruction(InsnClass.JMP | JmpOp.JCOND, 0, 0, _s16(off), 0)


def _jmp(cls: int, op: int, dst: Any, src: Any, off: int) -> Instruction:
    if op in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT, JmpOp.JCOND):
        raise AssemblerError(f"{JmpOp(op).name} is not a conditional jump")
    d = _reg(dst, "dst register")
    if isinstance(src, Reg):
        return Instruction(cls | op | Source.X, d, int(src), _s16(off), 0)
    return Instruction(cls | op | Source.K, d, 0, _s16(off), _imm32(src))


def jmp(op: JmpOp | str, dst: Any, src: Any, off: int) -> Instruction:
    """A 64-bit conditional jump `if dst op src goto pc+off` (src a Reg or an immediate)."""
    return _jmp(InsnClass.JMP, _op(op, JmpOp), dst, src, off)


def jmp32(op: JmpOp | str, dst: Any, src: Any, off: int) -> Instruction:
    """A 32-bit conditional jump comparing the low halves."""
    return _jmp(InsnClass.JMP32, _op(op, JmpOp), dst, src, off)


def _named_jmp(cls: int, op: JmpOp) -> Callable[[Any, Any, int], Instruction]:
    def f(dst: Any, src: Any, off: int) -> Instruction:
        return _jmp(cls, op, dst, src, off)

    f.__name__ = f.__qualname__ = op.name.lower() + ("32" if cls == InsnClass.JMP32 else "")
    f.__doc__ = f"`if dst {op.name.lower()} src goto pc+off` ({f.__name__})"
    return f


_JOPS = (JmpOp.JEQ, JmpOp.JNE, JmpOp.JGT, JmpOp.JGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSGT,
         JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE, JmpOp.JSET)
jeq, jne, jgt, jge, jlt, jle, jsgt, jsge, jslt, jsle, jset = (
    _named_jmp(InsnClass.JMP, op) for op in _JOPS)
jeq32, jne32, jgt32, jge32, jlt32, jle32, jsgt32, jsge32, jslt32, jsle32, jset32 = (
    _named_jmp(InsnClass.JMP32, op) for op in _JOPS)


def call_helper(helper: int | str) -> Instruction:
    """`call helper` by id or name (`"map_lookup_elem"` or `"bpf_map_lookup_elem"`)."""
    if isinstance(helper, str):
        hid = helper_id(helper)
        if hid is None:
            raise AssemblerError(f"unknown helper {helper!r}")
        helper = hid
    return Instruction(InsnClass.JMP | JmpOp.CALL, 0, CallSrc.HELPER, 0,
                       _imm32(helper, "helper id"))


def call_kfunc(btf_id: int, off: int = 0) -> Instruction:
    """`call kfunc`: imm is the kernel function's BTF id, off the fd_array index of the module
    BTF holding it (0 for vmlinux)."""
    if not 0 <= off <= 0x7FFF:
        raise AssemblerError(f"kfunc BTF fd index {off!r} must be in 0..32767")
    return Instruction(InsnClass.JMP | JmpOp.CALL, 0, CallSrc.KFUNC_CALL, off,
                       _imm32(btf_id, "kfunc BTF id"))


def call_local(offset: int) -> Instruction:
    """A BPF-to-BPF call: `call pc+offset`."""
    return Instruction(InsnClass.JMP | JmpOp.CALL, 0, CallSrc.PSEUDO_CALL, 0,
                       _imm32(offset, "call offset"))


def exit_() -> Instruction:
    """`exit`: return r0."""
    return Instruction(InsnClass.JMP | JmpOp.EXIT, 0, 0, 0, 0)


# -- the builder -------------------------------------------------------------------------------

# functions whose last positional argument is a jump/call target; the field it lands in
_TARGETS: dict[str, str] = {"ja": "off", "may_goto": "off", "gotol": "imm", "call_local": "imm",
                            "ld_func": "imm", "jmp": "off", "jmp32": "off"}
_TARGETS.update({f.__name__: "off" for f in (jeq, jne, jgt, jge, jlt, jle, jsgt, jsge, jslt, jsle,
                                             jset, jeq32, jne32, jgt32, jge32, jlt32, jle32,
                                             jsgt32, jsge32, jslt32, jsle32, jset32)})
_PLAIN = [n for n in __all__ if n[0].islower() and n not in _TARGETS]


class Assembler:
    """Collects instructions; jump and call targets may be label names.

    >>> a = Assembler(); a.mov64(R0, 0); a.jeq(R1, 0, "out"); a.mov64(R0, 1)
    >>> a.label("out"); a.exit_(); insns = a.assemble()
    """

    def __init__(self) -> None:
        self._insns: list[Instruction] = []
        self._labels: dict[str, int] = {}
        self._fixups: list[tuple[int, str, str]] = []  # (slot, label, field)

    def __len__(self) -> int:
        """Slots emitted so far (an ld_imm64 counts two)."""
        return len(self._insns)

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._labels)

    def label(self, name: str) -> None:
        """Name the slot the next instruction will occupy."""
        if not isinstance(name, str) or not name:
            raise AssemblerError(f"a label is a non-empty string, not {name!r}")
        if name in self._labels:
            raise AssemblerError(f"duplicate label {name!r}")
        self._labels[name] = len(self._insns)

    def emit(self, insns: Insns | Iterable[Instruction]) -> None:
        """Append ready-made instructions."""
        if isinstance(insns, Instruction):
            self._insns.append(insns)
            return
        for insn in insns:
            if not isinstance(insn, Instruction):
                raise AssemblerError(f"not an Instruction: {insn!r}")
            self._insns.append(insn)

    def _target(self, field: str, fn: Callable[..., Insns], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
        if args and isinstance(args[-1], str):
            label, args = args[-1], (*args[:-1], 0)
        elif isinstance(kwargs.get("off"), str):
            label = kwargs["off"]
            kwargs = {**kwargs, "off": 0}
        elif isinstance(kwargs.get("offset"), str):
            label = kwargs["offset"]
            kwargs = {**kwargs, "offset": 0}
        else:
            self.emit(fn(*args, **kwargs))
            return
        self._fixups.append((len(self._insns), label, field))
        self.emit(fn(*args, **kwargs))

    def assemble(self) -> list[Instruction]:
        """The program with every label resolved to a slot offset."""
        out = list(self._insns)
        for slot, label, field in self._fixups:
            if label not in self._labels:
                raise AssemblerError(f"unknown label {label!r} (instruction {slot})")
            target = self._labels[label]
            if target >= len(out):
                raise AssemblerError(f"label {label!r} is at the end of the program: no "
                                     f"instruction follows it (instruction {slot})")
            delta = target - slot - 1
            if field == "off" and not -0x8000 <= delta <= 0x7FFF:
                raise AssemblerError(f"jump to {label!r} from instruction {slot} is {delta} "
                                     "slots: out of the 16-bit range (use gotol)")
            if field == "imm" and not -0x80000000 <= delta <= 0x7FFFFFFF:
                raise AssemblerError(f"offset to {label!r} out of the 32-bit range")
            out[slot] = out[slot].replace(**{field: delta})
        return out


def _method(fn: Callable[..., Insns], field: str | None) -> Callable[..., None]:
    if field is None:
        def m(self: Assembler, *args: Any, **kwargs: Any) -> None:
            self.emit(fn(*args, **kwargs))
    else:
        def m(self: Assembler, *args: Any, **kwargs: Any) -> None:
            self._target(field, fn, args, kwargs)
    m.__name__ = m.__qualname__ = fn.__name__
    m.__doc__ = fn.__doc__
    return m


for _name in _PLAIN + list(_TARGETS):
    setattr(Assembler, _name, _method(globals()[_name], _TARGETS.get(_name)))
del _name
