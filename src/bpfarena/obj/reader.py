"""ELF + BTF -> ObjectSpec. Pure: reads the given file and nothing else.

The steps follow what libbpf does when it opens an object (without touching a kernel): find the
programs and their subprograms, decode the maps, turn data sections into global-data maps, resolve
each relocation of code to what it names, and link every entry program with its subprograms.
"""

from __future__ import annotations

import os
import struct

from ..btf.types import LINKAGE_EXTERN, Kind
from ..errors import ObjectError
from .elf import (
    SHN_UNDEF,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FILE,
    STT_FUNC,
    STT_SECTION,
    Rel,
    Section,
    Symbol,
    parse_elf,
)
from .link import (
    OP_CALL,
    OP_LD_IMM64,
    PSEUDO_CALL,
    CodeRef,
    DataRef,
    Func,
    Linker,
    SectionExt,
    Slot,
)
from .maps import BPF_MAP_TYPE_ARENA, BTFView, btf_maps, data_map, is_data_section, map_at
from .sections import attach_target, lookup_section
from .spec import CoreRelo, FuncInfo, LineInfo, MapSpec, ObjectSpec, ProgramSpec

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

ARENA_SECTION = ".addr_space.1"
_SLOT = struct.Struct("<BBhi")


def read_object(path: str | os.PathLike[str]) -> ObjectSpec:
    """Read a BPF object file into an ObjectSpec."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ObjectError(f"cannot read object: {e.strerror or e}", path=p) from None
    return read_object_bytes(data, p)


def read_object_bytes(data: bytes, name: str | None = None) -> ObjectSpec:
    """Read an in-memory BPF object; `name` is only used in error messages and `spec.path`."""
    try:
        return _Reader(bytes(data), name).read()
    except ObjectError as e:
        if e.path is None and name is not None and type(e) is ObjectError:
            raise ObjectError(e.message, section=e.section, symbol=e.symbol,
                              insn_index=e.insn_index, path=name) from None
        raise
    except RecursionError:
        raise ObjectError("object structure nests too deeply", path=name) from None
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError,
            UnicodeDecodeError, MemoryError) as e:
        # a last line of defence: whatever slipped past the checks is still bad input
        raise ObjectError(f"malformed object: {type(e).__name__}: {e}", path=name) from None


def decode_slots(data: bytes, section: str) -> list[Slot]:
    if len(data) % 8:
        raise ObjectError(f"code size {len(data)} is not a multiple of 8", section=section)
    out = []
    for op, regs, off, imm in _SLOT.iter_unpack(data):
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def to_instructions(slots: list[Slot]) -> list:
    from ..isa.insn import Instruction

    return [Instruction(op, dst, src, off, imm) for op, dst, src, off, imm in slots]


class _Reader:
    def __init__(self, data: bytes, path: str | None) -> None:
        self.data = data
        self.path = path

    # --- top level ------------------------------------------------------------------------------
    def read(self) -> ObjectSpec:
        elf = self.elf = parse_elf(self.data, self.path)
        self.btf = None
        self.bv: BTFView | None = None
        btf_sec = elf.by_name(".BTF")
        if btf_sec is not None:
            from ..btf import parse

            self.btf = parse(btf_sec.data)
            self.bv = BTFView(self.btf)
        self.datasecs = self.bv.datasecs() if self.bv else {}
        spec = ObjectSpec(path=self.path)
        spec.btf = self.btf
        spec.btf_raw = btf_sec.data if btf_sec is not None else b""
        ext_sec = elf.by_name(".BTF.ext")
        spec.btf_ext_raw = ext_sec.data if ext_sec is not None else b""
        spec.section_sizes = {s.name: s.size for s in elf.sections if s.index and s.name}
        spec.symbol_values = {s.name: s.value for s in elf.symbols
                              if s.name and s.type not in (STT_SECTION, STT_FILE)
                              and s.shndx != SHN_UNDEF}
        spec.license = self._license()
        spec.kernel_version = self._version()
        self._read_maps(spec)
        self._read_arena(spec)
        self._read_externs(spec)
        self._read_programs(spec)
        return spec

    def _license(self) -> str:
        sec = self.elf.by_name("license")
        if sec is None:
            return "GPL"
        text = sec.data.split(b"\0", 1)[0]
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            raise ObjectError("license is not ASCII text", section="license") from None

    def _version(self) -> int:
        sec = self.elf.by_name("version")
        if sec is None:
            return 0
        if sec.size != 4:
            raise ObjectError(f"version section is {sec.size} bytes, want 4", section="version")
        return int.from_bytes(sec.data, "little")

    # --- maps and data ----------------------------------------------------------------------------
    def _read_maps(self, spec: ObjectSpec) -> None:
        elf = self.elf
        if elf.by_name("maps") is not None:
            raise ObjectError("legacy 'maps' section (struct bpf_map_def) is not supported;"
                              " use BTF-defined maps in SEC(\".maps\")", section="maps")
        maps_sec = elf.by_name(".maps")
        if maps_sec is not None:
            for m in btf_maps(elf, maps_sec, self.bv, self.datasecs):
                self._add_map(spec, m)
        for sec in elf.sections:
            if is_data_section(sec) and sec.size > 0 and not sec.is_exec:
                self._add_map(spec, data_map(elf, sec, self.bv, self.datasecs))

    @staticmethod
    def _add_map(spec: ObjectSpec, m: MapSpec) -> None:
        if m.name in spec.maps:
            raise ObjectError("two maps with one name", section=m.section, symbol=m.name)
        spec.maps[m.name] = m

    def _read_arena(self, spec: ObjectSpec) -> None:
        arenas = [m.name for m in spec.maps.values() if m.type == BPF_MAP_TYPE_ARENA]
        if len(arenas) > 1:
            raise ObjectError(f"an object may have at most one arena map, found {len(arenas)}:"
                              f" {', '.join(arenas)}", section=".maps", symbol=arenas[1])
        spec.arena_map = arenas[0] if arenas else None
        sec = self.elf.by_name(ARENA_SECTION)
        if sec is None:
            return
        if spec.arena_map is None:
            raise ObjectError("arena globals (.addr_space.1) need a BPF_MAP_TYPE_ARENA map in"
                              " .maps", section=ARENA_SECTION)
        from .maps import section_vars

        spec.arena_image = bytes(sec.data)
        spec.arena_vars = section_vars(self.elf, sec, self.bv, self.datasecs.get(ARENA_SECTION))

    def _read_externs(self, spec: ObjectSpec) -> None:
        """Every undefined symbol is a __ksym (or __kconfig) extern; BTF says func or var."""
        btf_funcs: dict[str, int] = {}
        btf_vars: dict[str, tuple[int, str]] = {}
        if self.bv is not None:
            for tid, t in self.bv.items():
                if t.kind == Kind.FUNC and t.linkage == LINKAGE_EXTERN:
                    btf_funcs.setdefault(t.name, tid)
            for dsname in (".ksyms", ".kconfig"):
                ds = self.datasecs.get(dsname)
                if ds is None:
                    continue
                for vi in ds[1].vars:
                    v = self.bv.get(vi.type)
                    if v.kind == Kind.VAR:
                        btf_vars.setdefault(v.name, (vi.type, dsname))
                    elif v.kind == Kind.FUNC:
                        btf_funcs.setdefault(v.name, vi.type)
        for s in self.elf.symbols:
            if s.index == 0 or s.shndx != SHN_UNDEF or not s.name:
                continue
            if s.bind not in (STB_GLOBAL, STB_WEAK):
                raise ObjectError("undefined symbol is neither global nor weak", symbol=s.name)
            weak = s.bind == STB_WEAK
            if s.name in btf_funcs or s.type == STT_FUNC:
                spec.externs[s.name] = {"kind": "func", "weak": weak,
                                        "btf_id": btf_funcs.get(s.name, 0), "section": ".ksyms"}
            else:
                tid, dsname = btf_vars.get(s.name, (0, ".ksyms"))
                spec.externs[s.name] = {"kind": "var", "weak": weak, "btf_id": tid,
                                        "section": dsname}

    # --- programs -------------------------------------------------------------------------------
    def _functions(self) -> tuple[dict[str, list[Slot]], list[Func], list[tuple[Func, Symbol]]]:
        elf = self.elf
        code: dict[str, list[Slot]] = {}
        for sec in elf.sections:
            if sec.is_exec and sec.size:
                code[sec.name] = decode_slots(sec.data, sec.name)
        funcs: list[Func] = []
        func_syms: list[tuple[Func, Symbol]] = []
        by_sec: dict[int, list[Symbol]] = {}
        for s in elf.symbols:
            if s.type == STT_FUNC and s.shndx != SHN_UNDEF and s.shndx < len(elf.sections):
                by_sec.setdefault(s.shndx, []).append(s)
        for shndx, syms in sorted(by_sec.items()):
            sec = elf.sections[shndx]
            if not sec.is_exec:
                raise ObjectError("function symbol in a section that is not executable code",
                                  section=sec.name, symbol=syms[0].name)
            syms.sort(key=lambda s: (s.value, s.name))
            starts = sorted({s.value for s in syms})
            for s in syms:
                if s.value % 8:
                    raise ObjectError(f"function starts at byte {s.value}, not on an 8-byte"
                                      " slot", section=sec.name, symbol=s.name)
                size = s.size
                if size == 0:  # unsized: up to the next function or the section end
                    later = [v for v in starts if v > s.value]
                    size = (later[0] if later else sec.size) - s.value
                if size % 8 or s.value + size > sec.size or size <= 0:
                    raise ObjectError(f"function [{s.value}, +{size}) does not fit the"
                                      f" {sec.size}-byte section", section=sec.name,
                                      symbol=s.name)
                f = Func(s.name, sec.name, s.value // 8, (s.value + size) // 8)
                funcs.append(f)
                func_syms.append((f, s))
        return code, funcs, func_syms

    def _resolve_refs(self, spec: ObjectSpec) -> dict[tuple[str, int], CodeRef | DataRef]:
        elf = self.elf
        refs: dict[tuple[str, int], CodeRef | DataRef] = {}
        for target, rels in sorted(elf.rels.items()):
            sec = elf.sections[target]
            if not sec.is_exec:
                continue  # .rel.BTF, .rel.debug_*: link-time only
            slots = self.code.get(sec.name, [])
            for r in rels:
                ref = self._resolve(spec, sec, slots, r)
                if ref is not None:
                    refs[(sec.name, r.offset // 8)] = ref
        return refs

    def _resolve(self, spec: ObjectSpec, sec: Section, slots: list[Slot],
                 r: Rel) -> CodeRef | DataRef | None:
        elf = self.elf
        sym = elf.symbols[r.sym]
        idx = r.offset // 8
        sname = sym.name or (elf.sections[sym.shndx].name if sym.type == STT_SECTION
                             and sym.shndx < len(elf.sections) else None)

        def err(msg: str) -> ObjectError:
            return ObjectError(msg, section=sec.name, symbol=sname, insn_index=idx)

        if r.type == R_BPF_NONE:
            return None
        if r.offset % 8 or idx >= len(slots):
            raise err(f"relocation at byte offset {r.offset} is outside the code"
                      f" ({len(slots)} instructions) or not on an instruction")
        op, _, src, _, imm = slots[idx]
        if r.type == R_BPF_64_32:
            if op != OP_CALL:
                raise err(f"R_BPF_64_32 relocation at an instruction with opcode 0x{op:02x},"
                          " not a call")
            if sym.shndx == SHN_UNDEF:
                if sym.index == 0:
                    raise err("call relocation against the null symbol")
                return DataRef("kfunc", sym.name, 0, sym.bind == STB_WEAK)
            target = elf.sections[sym.shndx]
            if not target.is_exec:
                raise err(f"call relocation against a symbol in non-code section"
                          f" {target.name!r}")
            if src != PSEUDO_CALL:
                raise err("call relocation at a call that is not a bpf-to-bpf call (src != 1)")
            return CodeRef(target.name, sym.value // 8 + imm + 1)
        if r.type != R_BPF_64_64:
            raise err(f"unsupported relocation type {r.type} in code")
        if op != OP_LD_IMM64:
            raise err(f"R_BPF_64_64 relocation at an instruction with opcode 0x{op:02x},"
                      " not ld_imm64")
        if idx + 1 >= len(slots):
            raise err("ld_imm64 at the end of the code is missing its second slot")
        if sym.shndx == SHN_UNDEF:
            if sym.index == 0:
                raise err("ld_imm64 relocation against the null symbol")
            return DataRef("ksym", sym.name, 0, sym.bind == STB_WEAK)
        target = elf.sections[sym.shndx] if sym.shndx < len(elf.sections) else None
        if target is None:
            raise err(f"symbol in section index {sym.shndx}, which does not exist")
        offset = sym.value + imm
        if target.is_exec:
            if offset % 8:
                raise err(f"function pointer to byte {offset}, not an instruction")
            return CodeRef(target.name, offset // 8)
        if target.name == ".maps":
            name = map_at(elf, target, offset)
            if name is None or name not in spec.maps:
                raise err(f"ld_imm64 of .maps offset {offset}, where no map starts")
            return DataRef("map", name, 0)
        if target.name == ARENA_SECTION:
            if spec.arena_map is None:
                raise err("reference to an arena global without an arena map")
            return DataRef("arena", spec.arena_map, offset)
        if target.name in spec.maps and spec.maps[target.name].is_data:
            return DataRef("map_value", target.name, offset)
        if is_data_section(target):  # an empty data section: nothing to point into
            raise err(f"reference into empty data section {target.name!r}")
        raise err(f"ld_imm64 relocation against a symbol in section {target.name!r}, which is"
                  " neither a map, global data nor code")

    def _ext(self) -> dict[str, SectionExt]:
        sec = self.elf.by_name(".BTF.ext")
        if sec is None or self.btf is None:
            return {}
        from ..btf import parse_ext

        ext = parse_ext(sec.data, self.btf)
        out: dict[str, SectionExt] = {}
        names = set(ext.func_info) | set(ext.line_info) | set(ext.core_relos)
        for name in sorted(names):
            out[name] = SectionExt(
                [FuncInfo(r.insn, r.type_id) for r in ext.func_info.get(name, [])],
                [LineInfo(r.insn, r.file_name, r.line, r.line_num, r.column)
                 for r in ext.line_info.get(name, [])],
                [CoreRelo(r.insn, r.type_id, r.access, r.kind)
                 for r in ext.core_relos.get(name, [])])
        return out

    def _read_programs(self, spec: ObjectSpec) -> None:
        self.code, funcs, func_syms = self._functions()
        refs = self._resolve_refs(spec)
        linker = Linker(self.code, funcs, refs, self._ext())
        called = {(r.section, r.index) for r in refs.values() if isinstance(r, CodeRef)}
        for sec_name, slots in self.code.items():  # relative calls without relocations
            for i, (op, _, src, _, imm) in enumerate(slots):
                if (op == OP_CALL and src == PSEUDO_CALL and (sec_name, i) not in refs) or (
                        op == OP_LD_IMM64 and src == 4 and (sec_name, i) not in refs):
                    called.add((sec_name, i + imm + 1))
        for f, sym in func_syms:
            if f.section == ".text":
                continue
            if sym.bind == STB_LOCAL and (f.section, f.start) in called:
                continue  # a static helper in a program section, called by its neighbours
            if f.name in spec.programs:
                raise ObjectError("two programs with one name", section=f.section, symbol=f.name)
            spec.programs[f.name] = self._program(spec, f, linker)

    def _program(self, spec: ObjectSpec, f: Func, linker: Linker) -> ProgramSpec:
        d = lookup_section(f.section)
        linked = linker.link(f)
        func_id = None
        for fi in linked.func_info:
            if fi.insn_index == 0:
                func_id = fi.type_id
        if func_id is None and self.bv is not None:  # no .BTF.ext: look the FUNC up by name
            for tid, t in self.bv.items():
                if t.kind == Kind.FUNC and t.name == f.name:
                    func_id = tid
                    break
        prog = ProgramSpec(
            name=f.name, section=f.section,
            prog_type=int(d.prog_type) if d else 0,
            expected_attach_type=d.attach_type if d else 0,
            attach_to=attach_target(f.section),
            sleepable=d.sleepable if d else False,
            insns=to_instructions(linked.insns),
            relocations=linked.relocations,
            core_relos=linked.core_relos,
            func_info=linked.func_info,
            line_info=linked.line_info,
            subprograms=linked.subprograms,
            license=spec.license,
            btf_func_id=func_id,
        )
        prog.prog_flags = d.prog_flags if d else 0
        return prog
