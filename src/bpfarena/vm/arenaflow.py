"""Which registers hold arena pointers, as the verifier types them (PTR_TO_ARENA).

The kernel makes ALU64 arithmetic on an arena pointer 32-bit: when the destination of an ALU64
operation is PTR_TO_ARENA on any path, the verifier sets `needs_zext` and the fixups turn the
instruction into its ALU32 form (kernel/bpf/verifier.c, adjust_reg_min_max_vals). The VM has no
verifier, so it recomputes the same typing with a forward "may be an arena pointer" analysis over
every path (registers, and 8-byte spills to the stack through r10), across bpf-to-bpf calls.

Typing rules (6.18): cast_kern (addr_space_cast imm 1) makes an arena pointer; a 64-bit mov
copies the type; any ALU op keeps the destination's arena type (ALU64 ones become 32-bit);
`scalar += arena` (ALU64) makes the destination an arena pointer without conversion; everything
else that writes a register (loads, constants, calls, 32-bit moves, neg, byte swaps, cast_user)
makes it a scalar. Static subprograms receive their callers' argument types and return r0's.
Context loads of data/data_end/data_meta in packet programs are PTR_TO_PACKET, not arena
pointers: a scalar here too; ctxflow.py finds them, because the translator must also not take
their narrow (u32) loads for 32-bit values (they give 64-bit packet addresses).
"""

from __future__ import annotations

from typing import Any

_CONVERTIBLE = {0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xC0}
_SIZE = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}

State = tuple[int, frozenset[int]]  # (register bit mask, spilled-arena stack offsets)


def _succ(x: Any, i: int, end: int) -> list[int]:
    op = x.opcode
    if op == 0x18:
        return [i + 2] if i + 2 < end else []
    cls = op & 7
    if cls not in (5, 6):
        return [i + 1] if i + 1 < end else []
    code = op & 0xF0
    if code == 0x90:
        return []
    if code == 0x80:
        return [i + 1] if i + 1 < end else []
    if op == 0x05:
        return [i + x.off + 1]
    if op == 0x06:
        return [i + x.imm + 1]
    out = [i + x.off + 1]
    if i + 1 < end:
        out.append(i + 1)
    return out


def _flow_on(states: dict, work: list[int], x: Any, i: int, f: int, end: int, regs: int,
             slots: frozenset[int]) -> None:
    """Join (regs, slots) into every successor of instruction i inside function [f, end), and
    queue the ones whose state grew: the worklist step both flow analyses share."""
    for t in _succ(x, i, end):
        if not f <= t < end:
            continue
        old = states.get(t)
        if old is None:
            states[t] = (regs, slots)
            work.append(t)
        else:
            new = (old[0] | regs, old[1] | slots)
            if new != old:
                states[t] = new
                work.append(t)


def _kill_slots(slots: frozenset[int], off: int, size: int) -> frozenset[int]:
    if not slots:
        return slots
    return frozenset(s for s in slots if s + 8 <= off or s >= off + size)


def needs_zext(insns: list[Any], functions: list[int]) -> set[int]:
    """Slots of ALU64 instructions the kernel would run as ALU32 (arena destination)."""
    return analyze(insns, functions)[0]


def analyze(insns: list[Any], functions: list[int]) -> tuple[set[int], set[int]]:
    """(ALU64 slots that run as ALU32, memory-access slots whose base is an arena pointer).

    The kernel turns the latter into PROBE_MEM32 / PROBE_ATOMIC: they reach (u32)base + off,
    whatever the upper half of the register holds."""
    n = len(insns)
    bounds = {s: (functions[k + 1] if k + 1 < len(functions) else n)
              for k, s in enumerate(functions)}
    entry: dict[int, int] = {s: 0 for s in functions}
    ret_arena: dict[int, bool] = {s: False for s in functions}
    convert: set[int] = set()
    arena_mem: set[int] = set()
    changed = True
    rounds = 0
    while changed and rounds < 50:
        changed = False
        rounds += 1
        for f in functions:
            end = bounds[f]
            states: dict[int, State] = {f: (entry[f], frozenset())}
            work = [f]
            while work:
                i = work.pop()
                regs, slots = states[i]
                x = insns[i]
                cls = x.opcode & 7
                if cls == 1 and regs >> x.src & 1 and x.src != 10:
                    arena_mem.add(i)
                elif cls in (2, 3) and regs >> x.dst & 1 and x.dst != 10:
                    if not ((x.opcode & 0xE0) == 0xC0 and x.imm == 0x100):
                        arena_mem.add(i)
                    elif regs >> x.src & 1:  # load-acquire reads through src
                        arena_mem.add(i)
                elif cls == 3 and (x.opcode & 0xE0) == 0xC0 and x.imm == 0x100 \
                        and regs >> x.src & 1:
                    arena_mem.add(i)
                if x.opcode == 0x85 and x.src == 1:  # bpf-to-bpf call
                    t = i + x.imm + 1
                    if t in entry and entry[t] | (regs & 0x3E) != entry[t]:
                        entry[t] |= regs & 0x3E
                        changed = True
                    regs = (regs & ~0x3F) | (1 if ret_arena.get(t) else 0)
                else:
                    regs, slots, conv, exit_r0 = _step(x, regs, slots)
                    if conv:
                        convert.add(i)
                    if exit_r0 and not ret_arena[f]:
                        ret_arena[f] = True
                        changed = True
                _flow_on(states, work, x, i, f, end, regs, slots)
    return convert, arena_mem


def _step(x: Any, regs: int, slots: frozenset[int]) -> tuple[int, frozenset[int], bool, bool]:
    """Transfer one instruction: (regs, slots, convert?, r0 is an arena pointer at exit)."""
    op, d, s = x.opcode, x.dst, x.src
    cls = op & 7
    db = 1 << d
    conv = False
    if cls in (4, 7):
        code = op & 0xF0
        isreg = op & 0x08
        if code == 0xB0:
            if cls == 7 and isreg and x.off == 1:
                regs = regs | db if x.imm == 1 else regs & ~db
            elif cls == 7 and isreg and x.off == 0:
                regs = regs | db if regs >> s & 1 else regs & ~db
            else:
                regs &= ~db
        elif code in (0x80, 0xD0):
            regs &= ~db
        elif regs & db:
            conv = cls == 7 and code in _CONVERTIBLE
        elif cls == 7 and isreg and code == 0x00 and regs >> s & 1:
            regs |= db
        return regs, slots, conv, False
    if cls == 1:
        size = _SIZE[op & 0x18]
        if s == 10 and size == 8 and x.off in slots and (op & 0xE0) == 0x60:
            regs |= db
        else:
            regs &= ~db
        return regs, slots, False, False
    if cls == 2:
        if d == 10:
            slots = _kill_slots(slots, x.off, _SIZE[op & 0x18])
        return regs, slots, False, False
    if cls == 3:
        size = _SIZE[op & 0x18]
        if (op & 0xE0) == 0xC0:
            imm = x.imm
            if imm == 0x100:
                regs &= ~db
            elif imm == 0xF1:
                regs &= ~1
            elif imm & 1:
                regs &= ~(1 << s)
            if d == 10 and imm != 0x100:
                slots = _kill_slots(slots, x.off, size)
            return regs, slots, False, False
        if d == 10:
            slots = _kill_slots(slots, x.off, size)
            if size == 8 and regs >> s & 1:
                slots = slots | {x.off}
        return regs, slots, False, False
    if op == 0x18:
        return regs & ~db, slots, False, False
    if op == 0x85:  # helper or kfunc: r0-r5 become scalars
        return regs & ~0x3F, slots, False, False
    if op == 0x95:
        return regs, slots, False, bool(regs & 1)
    return regs, slots, False, False
