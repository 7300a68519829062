"""The VM's interpreter: a translated program bound to its memory, helpers and budget.

`Machine(unit, memory, bindings)` compiles the program once (translate.py) and `run()` executes
it: R1 = the context pointer, R10 = the top of frame 0. Errors raised inside carry the index of the
instruction that raised them, recovered from the traceback of the generated code (so the hot path
pays nothing to keep track of it).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

from ..errors import BPFError, BudgetExceeded, VMError
from . import translate as tr
from .memory import FRAME_SIZE, STACK_SIZE, Memory, Region

DEFAULT_BUDGET = 100_000_000
_ids = itertools.count()


class Machine:
    """One program, translated and ready to run against a Memory."""

    def __init__(self, unit: tr.Unit, memory: Memory, bindings: dict[str, Callable[..., int]],
                 stack: Region | None = None) -> None:
        self.unit = unit
        self.memory = memory
        if stack is None:
            stack = memory.add_region("stack", bytearray(STACK_SIZE))
        self.stack = stack
        unit.stack_base = stack.base
        ar = memory.arena
        if ar is not None:
            unit.arena_lo = ar.user_vm_start & 0xFFFFFFFF
            unit.arena_size = ar.size
            unit.arena_hi = ar.user_vm_start & ~0xFFFFFFFF & ((1 << 64) - 1)
            unit.no_user_conv = bool(ar.flags & (1 << 18))
        self.source = tr.translate(unit)
        self.filename = f"<bpf {unit.name} #{next(_ids)}>"
        env = self._env(bindings)
        try:
            code = compile(self.source, self.filename, "exec")
            ns: dict[str, Any] = {}
            exec(code, ns)
            self.funcs, self._get_ic, self._reset = ns["__make"](env)
        except (SyntaxError, RecursionError, MemoryError) as e:  # a translator limit or bug
            raise VMError(f"the VM could not translate the program: {type(e).__name__}: {e}",
                          program=unit.name) from None

    def _env(self, bindings: dict[str, Callable[..., int]]) -> dict[str, Any]:
        stk = self.stack.buf
        mv = memoryview(stk)
        e: dict[str, Any] = {"STK": stk}
        for f in "QIHB":
            e["S" + f] = mv.cast(f)
            e["S" + f + "s"] = mv.cast(f.lower())
            e["U" + f] = struct.Struct("<" + f).unpack_from
            e["P" + f] = struct.Struct("<" + f).pack_into
        ar = self.memory.arena
        for f in "QIHB":
            e["A" + f] = ar.cast_view(f) if ar is not None else None
            e["A" + f + "s"] = ar.cast_view(f.lower()) if ar is not None else None
        e["P"] = ar.present if ar is not None else None
        m = self.memory
        e.update(LD=m.load, ST=m.store, ALD=m.aload, ALDK=m.aload_keep, AST=m.astore, AT=m.atomic,
                 SDIV64=tr.sdiv64, SMOD64=tr.smod64, SDIV32=tr.sdiv32, SMOD32=tr.smod32,
                 BSWAP16=None, BSWAP32=tr.bswap32, BSWAP64=tr.bswap64,
                 OUT_OF_BUDGET=self._out_of_budget, TOO_DEEP=self._too_deep, BUDGET_CELL=None,
                 MAY_GOTO_CHECK=tr.may_goto_check)
        e.update(bindings)
        return e

    def _out_of_budget(self, slot: int) -> None:
        raise BudgetExceeded(f"instruction budget of {self.budget} exhausted", insn_index=slot,
                             program=self.unit.name)

    def _too_deep(self, slot: int) -> None:
        raise VMError(f"call depth exceeds {STACK_SIZE // FRAME_SIZE} frames", insn_index=slot,
                      program=self.unit.name)

    budget = DEFAULT_BUDGET

    def call(self, slot: int, r1: int, r2: int, r3: int, r4: int, r5: int, fp: int) -> int:
        """Call the function at `slot` (a callback) with a frame below `fp`."""
        return self.funcs[slot](r1, r2, r3, r4, r5, fp - FRAME_SIZE)

    def run(self, r1: int, budget: int = DEFAULT_BUDGET) -> tuple[int, int]:
        """Run the entry function; returns (r0, instructions executed)."""
        self.budget = budget
        self._reset(budget)
        stk = self.stack.buf
        stk[:] = bytes(len(stk))
        if self.memory.arena is not None:
            self.memory.arena.sync()
        entry = self.funcs[self.unit.functions[0]]
        try:
            r0 = entry(r1 & tr.M64, 0, 0, 0, 0, self.stack.base + STACK_SIZE)
        except VMError as e:
            self._annotate(e)
            raise
        except BPFError:
            raise
        except Exception as e:  # a VM bug, never the program's: still a typed error
            err = VMError(f"internal VM error {type(e).__name__}: {e}")
            err.__traceback__ = e.__traceback__
            self._annotate(err)
            raise err from e
        return r0, self._get_ic()

    @property
    def insns_executed(self) -> int:
        return self._get_ic()

    def _annotate(self, e: VMError) -> None:
        if e.insn_index is None:
            tb = e.__traceback__
            slot = None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == self.filename:
                    line = tb.tb_lineno - 1
                    if 0 <= line < len(self.unit.lines):
                        slot = self.unit.lines[line]
                tb = tb.tb_next
            if slot is not None and slot >= 0:
                e.insn_index = slot
                e.args = (f"{e.args[0]} (instruction {slot})",) + tuple(e.args[1:])
        if e.program is None:
            e.program = self.unit.name
            e.args = (f"{e.args[0]} [program {self.unit.name!r}]",) + tuple(e.args[1:])
