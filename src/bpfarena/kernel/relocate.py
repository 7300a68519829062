"""Patching a program's instructions for the kernel: map fds, global and arena offsets, kfunc and
__ksym BTF ids, CO-RE results. Pure byte editing over 8-byte slots; the loader supplies the values.

Encodings (facts from the UAPI and libbpf): ld_imm64 src 1 = BPF_PSEUDO_MAP_FD, src 2 =
BPF_PSEUDO_MAP_VALUE (second slot imm = offset), src 3 = BPF_PSEUDO_BTF_ID (a __ksym variable);
a kfunc call is `call` with src 2 (BPF_PSEUDO_KFUNC_CALL) and imm = the vmlinux FUNC id; a weak
kfunc that is absent becomes a helper call with imm 2002000000 + extern index, which fails only if
reached; an unresolvable CO-RE access becomes `call 0xbad2310`, which fails only if reached.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import NotSupportedError, ObjectError
from ..obj.spec import Relocation, RelocKind

LD_IMM64 = 0x18
CALL = 0x85
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_BTF_ID, PSEUDO_KFUNC_CALL = 1, 2, 3, 2
POISON_KFUNC_BASE = 2002000000
POISON_CORE = 0xBAD2310
_SLOT = struct.Struct("<BBhi")


def encode_insns(insns: Iterable[Any]) -> bytearray:
    """Raw bytes of a program from the spec's instructions (one object per 8-byte slot)."""
    out = bytearray()
    for ins in insns:
        out += _slot_bytes(ins)
    return out


def _slot_bytes(ins: Any) -> bytes:
    if isinstance(ins, (bytes, bytearray, memoryview)):
        return bytes(ins)
    for meth in ("encode", "to_bytes", "__bytes__"):
        f = getattr(ins, meth, None)
        if f is not None:
            b = bytes(f())
            if len(b) == 8:
                return b
    code = _attr(ins, "code", "opcode")
    dst = _attr(ins, "dst", "dst_reg")
    src = _attr(ins, "src", "src_reg")
    return _SLOT.pack(code & 0xFF, (dst & 0xF) | ((src & 0xF) << 4),
                      _s16(_attr(ins, "off", "offset")), _s32(_attr(ins, "imm")))


def _attr(obj: Any, *names: str) -> int:
    for n in names:
        if hasattr(obj, n):
            return int(getattr(obj, n))
    raise ObjectError(f"instruction object {obj!r} has none of {names}")


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class Insns:
    """A mutable program: get/set fields of slot i."""

    def __init__(self, raw: bytes | bytearray) -> None:
        self.raw = bytearray(raw)

    def __len__(self) -> int:
        return len(self.raw) // 8

    def get(self, i: int) -> tuple[int, int, int, int, int]:
        """(code, dst, src, off, imm) of slot i."""
        self._check(i)
        code, regs, off, imm = _SLOT.unpack_from(self.raw, 8 * i)
        return code, regs & 0xF, regs >> 4, off, imm

    def set(self, i: int, *, code: int | None = None, dst: int | None = None,
            src: int | None = None, off: int | None = None, imm: int | None = None) -> None:
        c, d, s, o, m = self.get(i)
        _SLOT.pack_into(self.raw, 8 * i, c if code is None else code,
                        ((d if dst is None else dst) & 0xF) | (((s if src is None else src) & 0xF)
                                                              << 4),
                        o if off is None else _s16(off), m if imm is None else _s32(imm))

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise ObjectError(f"relocation points past the program ({len(self)} slots)",
                              insn_index=i)

    def ld_imm64(self, i: int, what: str) -> None:
        if self.get(i)[0] != LD_IMM64 or i + 1 >= len(self):
            raise ObjectError(f"{what} relocation is not on an ld_imm64", insn_index=i)


def apply_relocations(insns: Insns, relocs: Iterable[Relocation], *, map_fd: Callable[[str], int],
                      arena_data_off: int, kfunc_id: Callable[[str], int | None],
                      ksym_id: Callable[[str], int | None], extern_index: Callable[[str], int],
                      program: str) -> None:
    """Patch every relocation in place; missing strong kfuncs/ksyms raise NotSupportedError."""
    for r in relocs:
        i = r.insn_index
        if r.kind in (RelocKind.MAP, RelocKind.MAP_VALUE, RelocKind.ARENA):
            insns.ld_imm64(i, r.kind.value)
            fd = map_fd(r.target)
            if r.kind is RelocKind.MAP:
                insns.set(i, src=PSEUDO_MAP_FD, imm=fd)
                insns.set(i + 1, imm=0)
            else:
                off = r.offset + (arena_data_off if r.kind is RelocKind.ARENA else 0)
                insns.set(i, src=PSEUDO_MAP_VALUE, imm=fd)
                insns.set(i + 1, imm=off)
        elif r.kind is RelocKind.KFUNC:
            tid = kfunc_id(r.target)
            code = insns.get(i)[0]
            if code == LD_IMM64:  # &kfunc, e.g. bpf_ksym_exists(kfunc)
                _ksym_ld(insns, i, tid, r, program, "kfunc")
                continue
            if code != CALL:
                raise ObjectError(f"kfunc relocation for {r.target!r} is not on a call",
                                  insn_index=i, symbol=r.target)
            if tid is not None:
                insns.set(i, src=PSEUDO_KFUNC_CALL, off=0, imm=tid)
            elif r.weak:
                insns.set(i, src=0, off=0, imm=POISON_KFUNC_BASE + extern_index(r.target))
            else:
                raise NotSupportedError(
                    f"kfunc {r.target!r}", f"not found in vmlinux BTF (program {program!r})")
        elif r.kind is RelocKind.KSYM:
            _ksym_ld(insns, i, ksym_id(r.target), r, program, "kernel variable")
        else:  # pragma: no cover - RelocKind is closed
            raise ObjectError(f"unknown relocation kind {r.kind!r}", insn_index=i)


def _ksym_ld(insns: Insns, i: int, tid: int | None, r: Relocation, program: str,
             what: str) -> None:
    insns.ld_imm64(i, "ksym")
    if tid is not None:
        insns.set(i, src=PSEUDO_BTF_ID, imm=tid)
        insns.set(i + 1, imm=0)
    elif r.weak:  # an absent weak symbol reads as address 0
        insns.set(i, src=0, imm=0)
        insns.set(i + 1, imm=0)
    else:
        raise NotSupportedError(f"{what} {r.target!r}",
                                f"not found in vmlinux BTF (program {program!r})")


def patch_core(insns: Insns, i: int, value: int | None, what: str) -> None:
    """Write a CO-RE result into instruction i (ALU imm, load/store off, or ld_imm64 imm);
    `value` None poisons the instruction as libbpf does."""
    code = insns.get(i)[0]
    cls = code & 7
    if value is None:
        if code == LD_IMM64:
            raise ObjectError(f"CO-RE relocation cannot be resolved: {what}", insn_index=i)
        insns.set(i, code=CALL, dst=0, src=0, off=0, imm=POISON_CORE)
        return
    if code == LD_IMM64:
        insns.set(i, imm=value & 0xFFFFFFFF)
        insns.set(i + 1, imm=(value >> 32) & 0xFFFFFFFF)
    elif cls in (4, 7) and not code & 0x08:  # ALU/ALU64 with an immediate
        insns.set(i, imm=value)
    elif cls in (1, 2, 3):  # LDX, ST, STX: the field offset
        if not -0x8000 <= value < 0x8000:
            raise ObjectError(f"CO-RE offset {value} does not fit a 16-bit field: {what}",
                              insn_index=i)
        insns.set(i, off=value)
    else:
        raise ObjectError(f"CO-RE relocation on an instruction that cannot hold it "
                          f"(opcode 0x{code:02x}): {what}", insn_index=i)


_SIZE_BITS = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}


def resize_load(insns: Insns, i: int, size: int, what: str) -> None:
    """A CO-RE field that changed size: a plain memory load/store takes the target's size."""
    code = insns.get(i)[0]
    cls, mode = code & 7, code & 0xE0
    if cls not in (1, 2, 3) or mode != 0x60:  # only BPF_MEM loads and stores
        return
    if size not in _SIZE_BITS:
        raise ObjectError(f"CO-RE field size {size} cannot be loaded directly: {what}",
                          insn_index=i)
    insns.set(i, code=(code & ~0x18) | _SIZE_BITS[size])
