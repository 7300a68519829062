"""How far into its context a program reads or writes (the verifier's max_ctx_offset).

BPF_PROG_TEST_RUN of a syscall program refuses (EINVAL) a ctx shorter than the furthest context
byte the program touches; the verifier records that while it checks every access through
PTR_TO_CTX. The VM recomputes it with a forward "may be the context pointer" analysis: R1 of the
entry function, copies of it (64-bit mov, 8-byte spills to the stack through r10), and the
arguments of static subprograms that receive it. Context pointers cannot be offset before an
access (the verifier refuses a modified ctx pointer), so every access is `reg + constant`.
"""

from __future__ import annotations

from typing import Any

from .arenaflow import _flow_on, _kill_slots

_SIZE = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}


def max_ctx_offset(insns: list[Any], functions: list[int]) -> int:
    return scan_ctx(insns, functions)[0]


def scan_ctx(insns: list[Any], functions: list[int]) -> tuple[int, dict[int, int]]:
    """(max_ctx_offset, {slot of a load through the context pointer: its offset}).

    The loads matter to the VM's typing: for packet programs the loader rewrites some context
    loads (data, data_end, data_meta) to give 64-bit packet addresses, as the kernel's ctx
    rewriting gives PTR_TO_PACKET, so their results are not 32-bit (arena) values."""
    n = len(insns)
    bounds = {s: (functions[k + 1] if k + 1 < len(functions) else n)
              for k, s in enumerate(functions)}
    entry = {s: 0 for s in functions}
    entry[functions[0]] = 1 << 1
    reach = 0
    loads: dict[int, int] = {}
    changed = True
    rounds = 0
    while changed and rounds < 50:
        changed = False
        rounds += 1
        for f in functions:
            end = bounds[f]
            states: dict[int, tuple[int, frozenset[int]]] = {f: (entry[f], frozenset())}
            work = [f]
            while work:
                i = work.pop()
                regs, slots = states[i]
                x = insns[i]
                op, d, s = x.opcode, x.dst, x.src
                cls = op & 7
                size = _SIZE[op & 0x18]
                if cls == 1 and regs >> s & 1:
                    reach = max(reach, x.off + size)
                    loads[i] = x.off
                elif cls in (2, 3) and regs >> d & 1:
                    reach = max(reach, x.off + size)
                db = 1 << d
                if op == 0x85 and s == 1:
                    t = i + x.imm + 1
                    if t in entry and entry[t] | (regs & 0x3E) != entry[t]:
                        entry[t] |= regs & 0x3E
                        changed = True
                    regs &= ~0x3F
                elif op == 0x85:
                    regs &= ~0x3F
                elif cls in (4, 7) or op == 0x18:
                    if op == 0xBF and x.off == 0:  # mov64 copies the pointer
                        regs = regs | db if regs >> s & 1 else regs & ~db
                    else:
                        regs &= ~db
                elif cls == 1:
                    if s == 10 and size == 8 and x.off in slots:
                        regs |= db
                    else:
                        regs &= ~db
                elif cls in (2, 3) and d == 10:
                    slots = _kill_slots(slots, x.off, size)
                    if cls == 3 and (op & 0xE0) == 0x60 and size == 8 and regs >> s & 1:
                        slots = slots | {x.off}
                if cls == 3 and (op & 0xE0) == 0xC0:
                    if x.imm == 0x100:
                        regs &= ~db
                    elif x.imm == 0xF1:
                        regs &= ~1
                    elif x.imm & 1:
                        regs &= ~(1 << s)
                _flow_on(states, work, x, i, f, end, regs, slots)
    return reach, loads
