"""Subprogram linking: give every entry program a private copy of each function it reaches.

The kernel loads one program as one flat instruction array whose bpf-to-bpf calls are relative;
so, like libbpf, we append every reachable subprogram after the entry function (breadth first,
each once), then rewrite each pseudo call and BPF_PSEUDO_FUNC ld_imm64 to the new relative slot
offset and carry relocations and .BTF.ext records along with shifted instruction indices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..errors import ObjectError
from .spec import CoreRelo, FuncInfo, LineInfo, Relocation, RelocKind

OP_CALL = 0x85
OP_LD_IMM64 = 0x18
PSEUDO_CALL = 1
PSEUDO_FUNC = 4

# An instruction slot as (opcode, dst, src, off, imm).
Slot = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Func:
    """A function symbol: slots [start, end) of section `section`."""

    name: str
    section: str
    start: int
    end: int


@dataclass(frozen=True)
class CodeRef:
    """A reference from an instruction to code: slot `index` of `section`."""

    section: str
    index: int


@dataclass(frozen=True)
class DataRef:
    """A reference the loader patches: becomes a Relocation."""

    kind: str
    target: str
    offset: int = 0
    weak: bool = False


@dataclass
class SectionExt:
    """.BTF.ext records of one section, with section-relative instruction indices."""

    func_info: list[FuncInfo]
    line_info: list[LineInfo]
    core_relos: list[CoreRelo]


@dataclass
class Linked:
    insns: list[Slot]
    relocations: list[Relocation]
    func_info: list[FuncInfo]
    line_info: list[LineInfo]
    core_relos: list[CoreRelo]
    subprograms: list[str]


class Linker:
    """Links entry programs over the object's code sections.

    `code` maps a section name to its slots; `funcs` lists every function symbol; `refs` maps
    (section, slot) to what the relocation there resolved to.
    """

    def __init__(self, code: dict[str, list[Slot]], funcs: Iterable[Func],
                 refs: dict[tuple[str, int], CodeRef | DataRef],
                 ext: dict[str, SectionExt]) -> None:
        self.code = code
        self.refs = refs
        self.ext = ext
        self.data_refs: dict[str, list[tuple[int, DataRef]]] = {}
        for (sec, i), ref in sorted(refs.items()):
            if isinstance(ref, DataRef):
                self.data_refs.setdefault(sec, []).append((i, ref))
        self.by_start: dict[tuple[str, int], Func] = {}
        for f in funcs:
            self.by_start.setdefault((f.section, f.start), f)

    def _code_target(self, f: Func, i: int, slot: Slot) -> CodeRef | None:
        """Where a call / func-pointer at slot i of f points, or None if it is no code ref."""
        ref = self.refs.get((f.section, i))
        op, _, src, _, imm = slot
        if isinstance(ref, CodeRef):
            return ref
        if ref is not None:
            return None
        if op == OP_CALL and src == PSEUDO_CALL:
            return CodeRef(f.section, i + imm + 1)
        if op == OP_LD_IMM64 and src == PSEUDO_FUNC:
            return CodeRef(f.section, i + imm + 1)
        return None

    def _func_at(self, ref: CodeRef, f: Func, i: int) -> Func:
        callee = self.by_start.get((ref.section, ref.index))
        if callee is None:
            raise ObjectError(f"call or function pointer to slot {ref.index} of {ref.section!r},"
                              " which is not the start of a function", section=f.section,
                              symbol=f.name, insn_index=i)
        return callee

    def _scan(self, f: Func) -> list[tuple[int, CodeRef]]:
        """Slots of f that refer to code, with their targets; checks ld_imm64 pairs."""
        slots = self.code[f.section]
        out = []
        i = f.start
        while i < f.end:
            slot = slots[i]
            ref = self._code_target(f, i, slot)
            if ref is not None:
                out.append((i, ref))
            if slot[0] == OP_LD_IMM64:
                if i + 1 >= f.end:
                    raise ObjectError("ld_imm64 is missing its second slot", section=f.section,
                                      symbol=f.name, insn_index=i)
                i += 2
            else:
                i += 1
        return out

    def link(self, entry: Func) -> Linked:
        order = [entry]
        base = {entry: 0}
        size = entry.end - entry.start
        scans: dict[Func, list[tuple[int, CodeRef]]] = {}
        k = 0
        while k < len(order):
            f = order[k]
            k += 1
            scans[f] = self._scan(f)
            for i, ref in scans[f]:
                callee = self._func_at(ref, f, i)
                if callee not in base:
                    base[callee] = size
                    size += callee.end - callee.start
                    order.append(callee)

        insns: list[Slot] = []
        relocs: list[Relocation] = []
        fi: list[FuncInfo] = []
        li: list[LineInfo] = []
        cr: list[CoreRelo] = []
        for f in order:
            b = base[f]
            slots = list(self.code[f.section][f.start:f.end])
            for i, ref in scans[f]:
                callee = self._func_at(ref, f, i)
                new_i = b + i - f.start
                op, dst, src, off, _ = slots[i - f.start]
                src = PSEUDO_CALL if op == OP_CALL else PSEUDO_FUNC
                rel = base[callee] - new_i - 1
                slots[i - f.start] = (op, dst, src, off, rel)
            insns.extend(slots)
            for i, ref in self.data_refs.get(f.section, ()):
                if not f.start <= i < f.end:
                    continue
                relocs.append(Relocation(b + i - f.start, RelocKind(ref.kind), ref.target,
                                         ref.offset, ref.weak))
            ext = self.ext.get(f.section)
            if ext is not None:
                fi += [replace(r, insn_index=b + r.insn_index - f.start) for r in ext.func_info
                       if f.start <= r.insn_index < f.end]
                li += [replace(r, insn_index=b + r.insn_index - f.start) for r in ext.line_info
                       if f.start <= r.insn_index < f.end]
                cr += [replace(r, insn_index=b + r.insn_index - f.start) for r in ext.core_relos
                       if f.start <= r.insn_index < f.end]
        return Linked(insns, relocs, fi, li, cr, [f.name for f in order[1:]])
