"""Translate a checked BPF program into Python source, once, and compile it.

Why: CPython runs straight-line code with registers in local variables several times faster than a
dispatch loop over decoded instructions. Each BPF function becomes one Python function; its
registers are locals; its basic blocks (one per jump target) sit in a binary `if pc < N` tree
inside a `while True`, so a jump costs a few comparisons and falls through costs nothing.

Semantics follow the kernel (kernel/bpf/core.c and the verifier's fixups): 32-bit results are
zero-extended, shift counts are masked, division by zero gives 0, modulo by zero leaves the
dividend (zero-extended for 32-bit), signed INT_MIN / -1 wraps, and so on. Memory accesses are
inlined for the stack (r10 with a constant offset) and the arena fast path; everything else goes
through `Memory`, which checks every address.

The instruction count is added at every block exit; the budget is checked on backward jumps and
at function entry (every loop passes one of them).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import VMError

M64 = (1 << 64) - 1
W = 0xFFFFFFFF
S64 = 1 << 63
S32 = 1 << 31
KSPACE = 1 << 32

_BOUND = re.compile(r"[HKXF][0-9]{1,10}")
# may_goto follows x86-64's timed rule (Linux 6.15+, what this kernel JITs): each frame starts
# with a count of BPF_MAX_TIMED_LOOPS; the may_goto that takes it to 0 asks MAY_GOTO_CHECK,
# which stamps the frame's start time the first time and afterwards gives 0 (so the next may_goto
# jumps) once MAY_GOTO_NS have passed since then, else refills the count.
BPF_MAX_TIMED_LOOPS = 0xFFFF
MAY_GOTO_NS = 250_000_000  # NSEC_PER_SEC / 4

_SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_VIEW = {8: "Q", 4: "I", 2: "H", 1: "B"}
_SHIFT = {8: 3, 4: 2, 2: 1, 1: 0}
_MASK = {8: M64, 4: W, 2: 0xFFFF, 1: 0xFF}


@dataclass
class CallTarget:
    kind: str  # "helper" | "kfunc" | "pcall"
    name: str  # name bound in the factory (H<id>, K<name>, F<slot>)
    needs_fp: bool = False


@dataclass
class Unit:
    """What the translator needs about one program (prepared by the loader and check.py)."""

    name: str
    insns: list[Any]  # one object per 8-byte slot with opcode/dst/src/off/imm
    ldimm: dict[int, int]  # slot of an ld_imm64 -> its 64-bit value after relocation
    calls: dict[int, CallTarget]  # slot of a call -> what it calls
    functions: list[int]  # start slot of every function (entry first), sorted
    arena_lo: int | None = None  # low 32 bits of user_vm_start; None: no arena
    arena_size: int = 0
    arena_hi: int = 0  # upper half of user_vm_start
    no_user_conv: bool = False
    stack_base: int = 0  # address of the stack region
    arena_mem: set[int] = field(default_factory=set)  # accesses through PTR_TO_ARENA bases
    max_ctx: int = 0  # the furthest context byte the program reaches
    pkt_loads: set[int] = field(default_factory=set)  # ctx loads that give packet pointers
    lines: list[int] = field(default_factory=list)  # source line -> slot (filled in)


def _sx(v: int, bits: int) -> int:
    """Sign-extend a `bits`-bit value to a Python int."""
    s = 1 << (bits - 1)
    return ((v & ((1 << bits) - 1)) ^ s) - s


class _Emitter:
    def __init__(self, unit: Unit) -> None:
        self.u = unit
        self.out: list[str] = []
        self.lines: list[int] = []  # parallel: slot for each line (-1: none)
        self.slot = -1
        self.known: set[int] = set()

    def emit(self, depth: int, text: str) -> None:
        self.out.append("    " * depth + text)
        self.lines.append(self.slot)


def translate(unit: Unit) -> str:
    """Python source of a factory `__make(E)` that returns the entry function and friends."""
    em = _Emitter(unit)
    em.emit(0, "def __make(E):")
    for name in ("STK", "SQ", "SI", "SH", "SB", "SQs", "SIs", "SHs", "SBs", "UQ", "UI", "UH",
                 "UB", "PQ", "PI", "PH", "PB", "AQ", "AI", "AH", "AB", "AQs", "AIs", "AHs",
                 "ABs", "P", "LD", "ST", "ALD", "ALDK", "AST", "AT", "SDIV64", "SMOD64", "SDIV32",
                 "SMOD32", "BSWAP16", "BSWAP32", "BSWAP64", "OUT_OF_BUDGET", "TOO_DEEP",
                 "BUDGET_CELL", "MAY_GOTO_CHECK"):
        em.emit(1, f"{name} = E[{name!r}]")
    bound = sorted({c.name for c in unit.calls.values() if c.kind != "pcall"})
    for name in bound + [c.name for c in unit.calls.values() if c.kind == "pcall"]:
        if not _BOUND.fullmatch(name):  # only names the loader made (never text from an object)
            raise VMError(f"refusing to translate a call bound to {name!r}", program=unit.name)
    for name in bound:
        em.emit(1, f"{name} = E[{name!r}]")
    em.emit(1, "ic = 0")
    em.emit(1, "BUDGET = 0")
    funcs = unit.functions
    for i, start in enumerate(funcs):
        end = funcs[i + 1] if i + 1 < len(funcs) else len(unit.insns)
        _function(em, start, end)
    em.emit(1, "def get_ic():")
    em.emit(2, "return ic")
    em.emit(1, "def reset(budget):")
    em.emit(2, "nonlocal ic, BUDGET")
    em.emit(2, "ic = 0")
    em.emit(2, "BUDGET = budget")
    em.emit(1, "return {" + ", ".join(f"{s}: F{s}" for s in funcs) + "}, get_ic, reset")
    unit.lines = em.lines
    return "\n".join(em.out) + "\n"


def _leaders(unit: Unit, start: int, end: int) -> list[int]:
    ins = unit.insns
    leaders = {start}
    i = start
    while i < end:
        x = ins[i]
        op = x.opcode
        cls = op & 7
        if op == 0x18:
            i += 2
            continue
        if cls in (5, 6):
            code = op & 0xF0
            if op == 0x06:  # gotol
                leaders.add(i + x.imm + 1)
            elif code not in (0x80, 0x90):
                leaders.add(i + x.off + 1)
        i += 1
    return sorted(leaders)


def _function(em: _Emitter, start: int, end: int) -> None:
    u = em.u
    em.slot = start
    em.emit(1, f"def F{start}(r1, r2, r3, r4, r5, r10):")
    em.emit(2, "nonlocal ic")
    em.emit(2, f"if r10 < {u.stack_base + 512}:")
    em.emit(3, f"TOO_DEEP({start})")
    em.emit(2, "if ic > BUDGET:")
    em.emit(3, f"OUT_OF_BUDGET({start})")
    em.emit(2, "r0 = r6 = r7 = r8 = r9 = 0")
    em.emit(2, f"fo = r10 - {u.stack_base}")
    em.emit(2, "fq = fo >> 3; fi = fo >> 2; fh = fo >> 1")
    has_mg = any((u.insns[i].opcode == 0xE5) for i in range(start, end))
    if has_mg:
        em.emit(2, f"mg = {BPF_MAX_TIMED_LOOPS}; mt = 0")
    leaders = _leaders(u, start, end)
    if len(leaders) == 1 and not _has_jumps(u, start, end):
        _block(em, start, end, 2, leaders, dispatch=False)
        return
    em.emit(2, f"pc = {start}")
    em.emit(2, "while True:")
    _tree(em, leaders, 0, len(leaders), 3, end)


def _has_jumps(unit: Unit, start: int, end: int) -> bool:
    i = start
    while i < end:
        op = unit.insns[i].opcode
        if op == 0x18:
            i += 2
            continue
        if op & 7 in (5, 6) and op & 0xF0 not in (0x80, 0x90):
            return True
        i += 1
    return False


def _tree(em: _Emitter, leaders: list[int], lo: int, hi: int, depth: int, end: int) -> None:
    if hi - lo == 1:
        b = leaders[lo]
        nxt = leaders[lo + 1] if lo + 1 < len(leaders) else end
        _block(em, b, nxt, depth, leaders, dispatch=True)
        return
    mid = (lo + hi) // 2
    em.emit(depth, f"if pc < {leaders[mid]}:")
    _tree(em, leaders, lo, mid, depth + 1, end)
    em.emit(depth, "else:")
    _tree(em, leaders, mid, hi, depth + 1, end)


def _block(em: _Emitter, b: int, nxt: int, d: int, leaders: list[int], dispatch: bool) -> None:
    """Emit slots [b, nxt). Ends by jumping, returning, or (dispatch) moving pc to nxt."""
    u = em.u
    ins = u.insns
    i = b
    n = 0  # instructions executed so far in this block
    ended = False
    em.known = set()  # registers known to hold a value below 2^32 here (reset at each leader)
    while i < nxt:
        x = ins[i]
        em.slot = i
        n += 1
        op = x.opcode
        cls = op & 7
        if op == 0x18:
            em.emit(d, f"r{x.dst} = {u.ldimm[i]}")
            _track_u32(em.known, x, u, u.ldimm[i])
            i += 2
            continue
        if cls in (4, 7):
            _alu(em, d, x, cls == 7)
        elif cls == 1:
            _ldx(em, d, x.dst, x.src, x.off, _SIZES[op & 0x18], (op & 0xE0) == 0x80)
        elif cls == 2:
            sz = _SIZES[op & 0x18]
            _store(em, d, x.dst, x.off, sz, str(x.imm & _MASK[sz]))
        elif cls == 3:
            sz = _SIZES[op & 0x18]
            if (op & 0xE0) == 0xC0:
                _atomic(em, d, x, sz)
            else:
                val = f"r{x.src}" if sz == 8 else f"(r{x.src} & {_MASK[sz]})"
                _store(em, d, x.dst, x.off, sz, val)
        else:  # jumps
            code = op & 0xF0
            if code == 0x90:  # exit
                em.emit(d, f"ic += {n}")
                em.emit(d, "return r0")
                ended = True
                break
            if code == 0x80:  # call
                _call(em, d, i)
            elif code == 0x00 and op in (0x05, 0x06):  # ja / gotol
                t = i + (x.imm if op == 0x06 else x.off) + 1
                _jump(em, d, i, t, n)
                ended = True
                break
            elif code == 0xE0:  # may_goto: leave when the frame's time budget is spent
                t = i + x.off + 1
                em.emit(d, "if not mg:")
                _jump(em, d + 1, i, t, n)
                em.emit(d, "mg -= 1")
                em.emit(d, "if not mg:")
                em.emit(d + 1, "mg, mt = MAY_GOTO_CHECK(mt)")
            else:
                t = i + x.off + 1
                em.emit(d, f"if {_cond(x, cls == 5)}:")
                _jump(em, d + 1, i, t, n)
        if i in u.pkt_loads:  # a 64-bit packet address (ctx rewriting), not a 32-bit value
            em.known.discard(x.dst)
        else:
            _track_u32(em.known, x, u, None)
        i += 1
    if not ended:
        # falls into the next block (check.py made sure one exists)
        em.slot = nxt - 1
        em.emit(d, f"ic += {n}")
        if dispatch:
            em.emit(d, f"pc = {nxt}")
        else:  # pragma: no cover - a single-block function always ends in exit or ja
            em.emit(d, "raise AssertionError('fell off a function')")


def _track_u32(known: set[int], x: Any, u: Unit, imm64: int | None) -> None:
    """Update the set of registers known to be < 2^32 after instruction x (within a block)."""
    op = x.opcode
    cls = op & 7
    d = x.dst
    if op == 0x18:
        (known.add if imm64 is not None and imm64 < KSPACE else known.discard)(d)
        return
    if cls == 4:
        if (op & 0xF0) == 0xD0 and x.imm == 64:
            if op & 0x08:  # TO_BE 64: a full swap
                known.discard(d)
            return  # TO_LE 64: unchanged
        known.add(d)
        return
    if cls == 7:
        code = op & 0xF0
        isreg = op & 0x08
        if code == 0xB0 and isreg and x.off == 0:
            (known.add if x.src in known else known.discard)(d)
        elif code == 0xB0 and isreg and x.off == 1:
            (known.add if x.imm == 1 or u.no_user_conv else known.discard)(d)
        elif code == 0xB0 and not isreg:
            (known.add if x.imm >= 0 else known.discard)(d)
        elif code == 0x50 and not isreg and x.imm >= 0:
            known.add(d)
        elif code == 0x70 and not isreg and x.imm >= 32:
            known.add(d)
        else:
            known.discard(d)
        return
    if cls == 1:
        (known.add if (op & 0x18) != 0x18 and (op & 0xE0) == 0x60 else known.discard)(d)
        return
    if cls == 3 and (op & 0xE0) == 0xC0:
        if x.imm == 0x100:
            known.discard(d)
        elif x.imm == 0xF1:
            known.discard(0)
        elif x.imm & 1:
            known.discard(x.src)
        return
    if op == 0x85:
        known.difference_update((0, 1, 2, 3, 4, 5))


def _jump(em: _Emitter, d: int, i: int, t: int, n: int) -> None:
    em.emit(d, f"ic += {n}")
    if t <= i:
        em.emit(d, "if ic > BUDGET:")
        em.emit(d + 1, f"OUT_OF_BUDGET({i})")
    em.emit(d, f"pc = {t}")
    em.emit(d, "continue")


def _cond(x: Any, is64: bool) -> str:
    code = x.opcode & 0xF0
    isreg = x.opcode & 0x08
    if is64:
        left = f"r{x.dst}"
        right = f"r{x.src}" if isreg else str(x.imm & M64)
        sbit, mask = S64, M64
    else:
        left = f"(r{x.dst} & {W})"
        right = f"(r{x.src} & {W})" if isreg else str(x.imm & W)
        sbit, mask = S32, W
    ops = {0x10: "==", 0x20: ">", 0x30: ">=", 0x50: "!=", 0xA0: "<", 0xB0: "<="}
    if code in ops:
        if code == 0x10 and right == "0":
            return f"not {left}"
        if code == 0x50 and right == "0":
            return left
        return f"{left} {ops[code]} {right}"
    if code == 0x40:
        return f"{left} & {right}"
    sops = {0x60: ">", 0x70: ">=", 0xC0: "<", 0xD0: "<="}
    if code in sops:
        rs = f"({right} ^ {sbit})" if isreg else str((int(right) ^ sbit) & mask)
        return f"({left} ^ {sbit}) {sops[code]} {rs}"
    raise AssertionError(f"jump op {x.opcode:#x}")


def _alu(em: _Emitter, d: int, x: Any, is64: bool) -> None:
    u = em.u
    op = x.opcode
    code = op & 0xF0
    isreg = op & 0x08
    dr = f"r{x.dst}"
    e = em.emit
    if is64:
        src = f"r{x.src}" if isreg else str(x.imm & M64)
        if code == 0x00:
            e(d, f"{dr} = ({dr} + {src}) & {M64}")
        elif code == 0x10:
            e(d, f"{dr} = ({dr} - {src}) & {M64}")
        elif code == 0x20:
            e(d, f"{dr} = ({dr} * {src}) & {M64}")
        elif code == 0x30:
            if x.off == 1:
                e(d, f"{dr} = SDIV64({dr}, {src})")
            elif isreg:
                e(d, f"{dr} = {dr} // {src} if {src} else 0")
            else:
                e(d, f"{dr} //= {src}")
        elif code == 0x90:
            if x.off == 1:
                e(d, f"{dr} = SMOD64({dr}, {src})")
            elif isreg:
                e(d, f"if {src}:")
                e(d + 1, f"{dr} %= {src}")
            else:
                e(d, f"{dr} %= {src}")
        elif code == 0x40:
            e(d, f"{dr} |= {src}")
        elif code == 0x50:
            e(d, f"{dr} &= {src}")
        elif code == 0xA0:
            e(d, f"{dr} ^= {src}")
        elif code == 0x60:
            sh = f"({src} & 63)" if isreg else src
            e(d, f"{dr} = ({dr} << {sh}) & {M64}")
        elif code == 0x70:
            sh = f"({src} & 63)" if isreg else src
            e(d, f"{dr} >>= {sh}")
        elif code == 0xC0:
            sh = f"({src} & 63)" if isreg else src
            e(d, f"{dr} = ((({dr} ^ {S64}) - {S64}) >> {sh}) & {M64}")
        elif code == 0x80:
            e(d, f"{dr} = -{dr} & {M64}")
        elif code == 0xB0:
            if not isreg:
                e(d, f"{dr} = {src}")
            elif x.off == 0:
                if x.dst != x.src:
                    e(d, f"{dr} = {src}")
            elif x.off == 1:  # addr_space_cast
                if x.imm == 1 or u.no_user_conv:
                    e(d, f"{dr} = {src} & {W}")
                else:
                    e(d, f"{dr} = ({u.arena_hi} | ({src} & {W})) if {src} & {W} else 0")
            else:
                bits = x.off
                s = 1 << (bits - 1)
                e(d, f"{dr} = ((({src} & {(1 << bits) - 1}) ^ {s}) - {s}) & {M64}")
        elif code == 0xD0:  # ALU64 END: unconditional byte swap
            e(d, f"{dr} = {_bswap(dr, x.imm)}")
        else:  # pragma: no cover - rejected by check.py
            raise AssertionError(f"alu64 op {op:#x}")
        return
    src = f"r{x.src}" if isreg else str(x.imm & W)
    if code == 0x00:
        e(d, f"{dr} = ({dr} + {src}) & {W}")
    elif code == 0x10:
        e(d, f"{dr} = ({dr} - {src}) & {W}")
    elif code == 0x20:
        e(d, f"{dr} = ({dr} * {src}) & {W}")
    elif code == 0x30:
        if x.off == 1:
            e(d, f"{dr} = SDIV32({dr}, {src})")
        elif isreg:
            e(d, f"{dr} = ({dr} & {W}) // ({src} & {W}) if {src} & {W} else 0")
        else:
            e(d, f"{dr} = ({dr} & {W}) // {src}")
    elif code == 0x90:
        if x.off == 1:
            e(d, f"{dr} = SMOD32({dr}, {src})")
        elif isreg:
            e(d, f"{dr} = ({dr} & {W}) % ({src} & {W}) if {src} & {W} else {dr} & {W}")
        else:
            e(d, f"{dr} = ({dr} & {W}) % {src}")
    elif code == 0x40:
        e(d, f"{dr} = ({dr} | {src}) & {W}")
    elif code == 0x50:
        e(d, f"{dr} = {dr} & {src} & {W}" if isreg else f"{dr} &= {src}")
    elif code == 0xA0:
        e(d, f"{dr} = ({dr} ^ {src}) & {W}")
    elif code == 0x60:
        sh = f"({src} & 31)" if isreg else src
        e(d, f"{dr} = ({dr} << {sh}) & {W}")
    elif code == 0x70:
        sh = f"({src} & 31)" if isreg else src
        e(d, f"{dr} = ({dr} & {W}) >> {sh}")
    elif code == 0xC0:
        sh = f"({src} & 31)" if isreg else src
        e(d, f"{dr} = (((({dr} & {W}) ^ {S32}) - {S32}) >> {sh}) & {W}")
    elif code == 0x80:
        e(d, f"{dr} = -{dr} & {W}")
    elif code == 0xB0:
        if not isreg:
            e(d, f"{dr} = {src}")
        elif x.off == 0:
            e(d, f"{dr} = {src} & {W}")
        else:
            bits = x.off
            s = 1 << (bits - 1)
            e(d, f"{dr} = ((({src} & {(1 << bits) - 1}) ^ {s}) - {s}) & {W}")
    elif code == 0xD0:
        if isreg:  # TO_BE: swap the low imm bits
            e(d, f"{dr} = {_bswap(dr, x.imm)}")
        elif x.imm == 16:  # TO_LE on a little-endian machine: truncate
            e(d, f"{dr} &= 65535")
        elif x.imm == 32:
            e(d, f"{dr} &= {W}")
    else:  # pragma: no cover
        raise AssertionError(f"alu32 op {op:#x}")


def _bswap(r: str, bits: int) -> str:
    if bits == 16:
        return f"(({r} & 255) << 8) | (({r} >> 8) & 255)"
    if bits == 32:
        return f"BSWAP32({r})"
    return f"BSWAP64({r})"


def _ldx(em: _Emitter, d: int, dst: int, src: int, off: int, sz: int, signed: bool,
         keep_on_fault: bool = False) -> None:
    """A load; an arena fault gives 0, or with `keep_on_fault` (load-acquire, whose x86 fixup
    does not clear the destination) leaves the register as it was."""
    u = em.u
    v = _VIEW[sz]
    sfx = "s" if signed else ""
    sbit = 1 << (8 * sz - 1)
    dr = f"r{dst}"

    def sext(expr: str) -> str:
        return f"((({expr}) ^ {sbit}) - {sbit}) & {M64}" if signed else expr

    if src == 10 and -512 <= off and off + sz <= 0:
        if off % sz == 0:
            idx = f"f{v.lower() if sz != 1 else ''}"
            if sz == 1:
                expr = f"SB{sfx}[fo + {off}]"
            else:
                expr = f"S{v}{sfx}[{idx} + {off // sz}]"
            em.emit(d, f"{dr} = {expr} & {M64}" if signed else f"{dr} = {expr}")
        else:
            em.emit(d, f"{dr} = {sext(f'U{v}(STK, fo + {off})[0]')}")
        return
    if u.arena_lo is None or src == 10:
        em.emit(d, f"{dr} = {sext(f'LD(r{src} + {off}, {sz})')}")
        return
    known = src in em.known  # then the value is a 32-bit arena pointer: no region check
    typed = em.slot in u.arena_mem  # PTR_TO_ARENA: the kernel reaches (u32)reg + off
    if not known and not typed:
        em.emit(d, f"if r{src} < {KSPACE}:")
    e = d if known or typed else d + 1
    base = f"r{src}" if known or not typed else f"(r{src} & {W})"
    em.emit(e, f"o = {base} + {off - u.arena_lo}")
    align = f" and not o & {sz - 1}" if sz > 1 else ""
    em.emit(e, f"if 0 <= o < {u.arena_size}{align} and P[o >> 12]:")
    fast = f"A{v}{sfx}[o >> {_SHIFT[sz]}]"
    em.emit(e + 1, f"{dr} = {fast} & {M64}" if signed else f"{dr} = {fast}")
    em.emit(e, "else:")
    if keep_on_fault:
        em.emit(e + 1, f"{dr} = ALDK({base} + {off}, {sz}, {dr})")
    else:
        em.emit(e + 1, f"{dr} = {sext(f'ALD({base} + {off}, {sz})')}")
    if not known and not typed:
        em.emit(d, "else:")
        em.emit(d + 1, f"{dr} = {sext(f'LD(r{src} + {off}, {sz})')}")


def _store(em: _Emitter, d: int, dst: int, off: int, sz: int, val: str) -> None:
    u = em.u
    v = _VIEW[sz]
    if dst == 10 and -512 <= off and off + sz <= 0:
        if off % sz == 0:
            if sz == 1:
                em.emit(d, f"SB[fo + {off}] = {val}")
            else:
                em.emit(d, f"S{v}[f{v.lower()} + {off // sz}] = {val}")
        else:
            em.emit(d, f"P{v}(STK, fo + {off}, {val})")
        return
    if u.arena_lo is None or dst == 10:
        em.emit(d, f"ST(r{dst} + {off}, {sz}, {val})")
        return
    known = dst in em.known
    typed = em.slot in u.arena_mem
    if not known and not typed:
        em.emit(d, f"if r{dst} < {KSPACE}:")
    e = d if known or typed else d + 1
    base = f"r{dst}" if known or not typed else f"(r{dst} & {W})"
    em.emit(e, f"o = {base} + {off - u.arena_lo}")
    align = f" and not o & {sz - 1}" if sz > 1 else ""
    em.emit(e, f"if 0 <= o < {u.arena_size}{align} and P[o >> 12]:")
    em.emit(e + 1, f"A{v}[o >> {_SHIFT[sz]}] = {val}")
    em.emit(e, "else:")
    em.emit(e + 1, f"AST({base} + {off}, {sz}, {val})")
    if not known and not typed:
        em.emit(d, "else:")
        em.emit(d + 1, f"ST(r{dst} + {off}, {sz}, {val})")


def _atomic(em: _Emitter, d: int, x: Any, sz: int) -> None:
    imm = x.imm
    if imm == 0x100:  # load-acquire: dst = *(src + off)
        _ldx(em, d, x.dst, x.src, x.off, sz, False, keep_on_fault=True)
        return
    if imm == 0x110:  # store-release: *(dst + off) = src
        val = f"r{x.src}" if sz == 8 else f"(r{x.src} & {_MASK[sz]})"
        _store(em, d, x.dst, x.off, sz, val)
        return
    base = f"(r{x.dst} & {W})" if em.slot in em.u.arena_mem else f"r{x.dst}"
    call = f"AT({base}, {x.off}, {sz}, {imm}, r{x.src}, r0)"
    if imm == 0xF1:  # cmpxchg: r0 = old
        em.emit(d, f"t = {call}")
        em.emit(d, "if t is not None:")
        em.emit(d + 1, "r0 = t")
    elif imm & 1:  # fetch forms and xchg: src = old
        em.emit(d, f"t = {call}")
        em.emit(d, "if t is not None:")
        em.emit(d + 1, f"r{x.src} = t")
    else:
        em.emit(d, call)


def _call(em: _Emitter, d: int, i: int) -> None:
    c = em.u.calls[i]
    if c.kind == "pcall":
        em.emit(d, f"r0 = {c.name}(r1, r2, r3, r4, r5, r10 - 512)")
    elif c.needs_fp:
        em.emit(d, f"r0 = {c.name}(r1, r2, r3, r4, r5, r10)")
    else:
        em.emit(d, f"r0 = {c.name}(r1, r2, r3, r4, r5)")


def may_goto_check(stamp: int) -> tuple[int, int]:
    """(new count, frame timestamp) when a frame's may_goto count reaches 0 (the kernel's
    bpf_check_timed_may_goto, on a monotonic clock)."""
    now = time.monotonic_ns() or 1
    if not stamp:
        return BPF_MAX_TIMED_LOOPS, now
    if now - stamp >= MAY_GOTO_NS:
        return 0, stamp
    return BPF_MAX_TIMED_LOOPS, stamp


def bswap32(v: int) -> int:
    return int.from_bytes((v & W).to_bytes(4, "little"), "big")


def bswap64(v: int) -> int:
    return int.from_bytes((v & M64).to_bytes(8, "little"), "big")


def sdiv64(a: int, b: int) -> int:
    if b == 0:
        return 0
    sa, sb = _sx(a, 64), _sx(b, 64)
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & M64


def smod64(a: int, b: int) -> int:
    if b == 0:
        return a
    sa, sb = _sx(a, 64), _sx(b, 64)
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & M64


def sdiv32(a: int, b: int) -> int:
    if b & W == 0:
        return 0
    sa, sb = _sx(a, 32), _sx(b, 32)
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & W


def smod32(a: int, b: int) -> int:
    if b & W == 0:
        return a & W
    sa, sb = _sx(a, 32), _sx(b, 32)
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & W
