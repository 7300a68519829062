"""Load-time checks of the VM. This is NOT the kernel verifier.

It only makes sure a program is well formed enough to translate and run safely: known opcodes with
legal fields, registers r0..r10 with r10 read-only, jumps that land on instructions inside their own
function, ld_imm64 pairs that are whole, valid addr_space_cast immediates, call targets that exist,
and functions that end in exit or a jump instead of falling off their end. Types, bounds, pointer
provenance and termination are not checked here: the VM's memory checks and instruction budget
catch those at run time.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInstruction, NotSupportedError

MAX_SLOTS = 1_000_000

_SIZE = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_ALU_OPS = {0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0}
_JMP_COND = {0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0}
_ATOMIC_RMW = {0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1}
_LOAD_ACQ, _STORE_REL = 0x100, 0x110


def _bad(msg: str, i: int, name: str | None) -> InvalidInstruction:
    return InvalidInstruction(msg, insn_index=i, program=name)


def check_program(insns: list[Any], *, has_arena: bool, name: str | None = None) -> list[int]:
    """Check a relocated program; return the start slot of every function (entry first)."""
    n = len(insns)
    if n == 0:
        raise InvalidInstruction("the program is empty", program=name)
    if n > MAX_SLOTS:
        raise InvalidInstruction(f"the program has {n} slots; the limit is {MAX_SLOTS}",
                                 program=name)
    second = set()  # second halves of ld_imm64
    funcs = {0}
    jumps: list[tuple[int, int]] = []
    i = 0
    while i < n:
        x = insns[i]
        _check_insn(x, i, n, has_arena, name)
        op = x.opcode
        if op == 0x18:
            y = insns[i + 1]
            if y.opcode or y.dst or y.src or y.off:
                raise _bad("the second slot of ld_imm64 must be zero except imm", i + 1, name)
            second.add(i + 1)
            if x.src == 4:
                funcs.add(i + x.imm + 1)
                jumps.append((i, i + x.imm + 1))
            i += 2
            continue
        cls = op & 7
        if cls in (5, 6):
            code = op & 0xF0
            if op == 0x85 and x.src == 1:
                funcs.add(i + x.imm + 1)
                jumps.append((i, i + x.imm + 1))
            elif op == 0x06:
                jumps.append((i, i + x.imm + 1))
            elif code not in (0x80, 0x90):
                jumps.append((i, i + x.off + 1))
        i += 1
    for src, t in jumps:
        if not 0 <= t < n:
            raise _bad(f"jump to slot {t} is out of range (0..{n - 1})", src, name)
        if t in second:
            raise _bad(f"jump to slot {t}, the middle of an ld_imm64", src, name)
    starts = sorted(funcs)
    bounds = starts[1:] + [n]
    func_of = {}
    for s, e in zip(starts, bounds, strict=True):
        func_of[s] = e
    # every jump stays inside its function; every function ends in exit or ja
    for e in bounds:
        last = e - 1
        if last in second:
            last -= 1
        x = insns[last]
        if not (x.opcode in (0x95, 0x05) or x.opcode == 0x06):
            raise _bad("the function does not end in exit or a jump (it would fall off its end)",
                       last, name)
    for src, t in jumps:
        x = insns[src]
        if x.opcode == 0x85 or x.opcode == 0x18:
            continue
        fs = max(s for s in starts if s <= src)
        if not fs <= t < func_of[fs]:
            raise _bad(f"jump to slot {t} leaves its function [{fs}, {func_of[fs]})", src, name)
    return starts


def _check_insn(x: Any, i: int, n: int, has_arena: bool, name: str | None) -> None:
    op, dst, src, off, imm = x.opcode, x.dst, x.src, x.off, x.imm
    if not (0 <= dst <= 10 and 0 <= src <= 10):
        raise _bad(f"bad register (dst r{dst}, src r{src})", i, name)
    cls = op & 7
    if cls in (4, 7):
        code = op & 0xF0
        isreg = op & 0x08
        if code not in _ALU_OPS:
            raise _bad(f"unknown ALU opcode 0x{op:02x}", i, name)
        if dst == 10:
            raise _bad("r10 is read-only", i, name)
        if code == 0xD0:
            if cls == 7 and isreg:
                raise _bad(f"unknown opcode 0x{op:02x}", i, name)
            if imm not in (16, 32, 64) or src or off:
                raise _bad(f"byte swap needs imm 16, 32 or 64 (got {imm})", i, name)
            return
        if isreg and imm and not (code == 0xB0 and off == 1):
            raise _bad("register-source ALU instruction with a non-zero imm", i, name)
        if not isreg and src:
            raise _bad("immediate ALU instruction with a non-zero src register", i, name)
        if code == 0x80:
            if isreg or src or off or imm:
                raise _bad("neg takes no operand", i, name)
            return
        if code in (0x30, 0x90):
            if off not in (0, 1):
                raise _bad(f"div/mod with off {off} (only 0 or 1 for signed)", i, name)
            if not isreg and imm == 0:
                raise _bad("division by zero", i, name)
            return
        if code in (0x60, 0x70, 0xC0) and not isreg:
            if not 0 <= imm < (64 if cls == 7 else 32):
                raise _bad(f"invalid shift {imm}", i, name)
        if code == 0xB0:
            if cls == 7 and isreg and off == 1:
                if imm not in (1, 0x10000):
                    raise _bad("addr_space_cast insn can only convert between address space 1 "
                               f"and 0 (imm {imm:#x})", i, name)
                if not has_arena:
                    raise _bad("addr_space_cast in a program without an arena", i, name)
                return
            allowed = (0, 8, 16, 32) if cls == 7 else (0, 8, 16)
            if off not in allowed or (off and not isreg):
                raise _bad(f"mov with off {off}", i, name)
            return
        if off:
            raise _bad(f"ALU instruction with a non-zero off {off}", i, name)
        return
    if cls in (5, 6):
        code = op & 0xF0
        isreg = op & 0x08
        if code == 0x00:
            if isreg or dst or src:
                raise _bad(f"bad ja encoding 0x{op:02x}", i, name)
            if cls == 5 and imm:
                raise _bad("ja with a non-zero imm (use gotol)", i, name)
            if cls == 6 and off:
                raise _bad("gotol with a non-zero off", i, name)
            return
        if code == 0x80:
            if cls != 5 or isreg or dst or off:
                raise _bad(f"bad call encoding 0x{op:02x}", i, name)
            if src not in (0, 1, 2):
                raise _bad(f"call with src {src}", i, name)
            return
        if code == 0x90:
            if cls != 5 or isreg or dst or src or off or imm:
                raise _bad(f"bad exit encoding 0x{op:02x}", i, name)
            return
        if code == 0xE0:
            if cls != 5 or isreg or dst or src or imm:
                raise _bad(f"bad may_goto encoding 0x{op:02x}", i, name)
            return
        if code not in _JMP_COND:
            raise _bad(f"unknown jump opcode 0x{op:02x}", i, name)
        if not isreg and src:
            raise _bad("immediate jump with a non-zero src register", i, name)
        if isreg and imm:
            raise _bad("register jump with a non-zero imm", i, name)
        return
    if cls == 0:
        if op == 0x18:
            if i + 1 >= n:
                raise _bad("ld_imm64 is missing its second slot", i, name)
            if src > 6 or off:
                raise _bad(f"ld_imm64 with src {src}, off {off}", i, name)
            if dst == 10:
                raise _bad("r10 is read-only", i, name)
            return
        if op & 0xE0 in (0x20, 0x40):
            raise NotSupportedError("legacy packet loads (LD_ABS/LD_IND)",
                                    f"instruction {i} of program {name!r}")
        raise _bad(f"unknown opcode 0x{op:02x}", i, name)
    mode = op & 0xE0
    size = _SIZE[op & 0x18]
    if cls == 1:
        if mode not in (0x60, 0x80) or (mode == 0x80 and size == 8):
            raise _bad(f"unknown load opcode 0x{op:02x}", i, name)
        if dst == 10:
            raise _bad("r10 is read-only", i, name)
        if imm:
            raise _bad("load with a non-zero imm", i, name)
        return
    if cls == 2:
        if mode != 0x60 or src:
            raise _bad(f"unknown store opcode 0x{op:02x}", i, name)
        return
    # STX
    if mode == 0x60:
        if imm:
            raise _bad("store with a non-zero imm", i, name)
        return
    if mode != 0xC0:
        raise _bad(f"unknown store opcode 0x{op:02x}", i, name)
    if imm == _LOAD_ACQ:
        if dst == 10:
            raise _bad("r10 is read-only", i, name)
        return
    if imm == _STORE_REL:
        return
    if imm not in _ATOMIC_RMW or size not in (4, 8):
        raise _bad(f"unknown atomic operation imm {imm:#x} (size {size})", i, name)
    if (imm & 1 or imm == 0xF1) and src == 10 and imm != 0xF1:
        raise _bad("r10 is read-only (atomic fetch into r10)", i, name)
