"""A small, eager view of a BPF ELF relocatable object.

pyelftools parses lazily and raises its own exception types (and struct.error, ValueError, ...)
on garbage. We pull everything we need out of it in one guarded pass into plain dataclasses, so
the rest of the reader works on validated data and only ever sees `ObjectError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from ..errors import ObjectError

EM_BPF = 247
ET_REL = 1

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2

STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_FILE = 4

SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

MAX_NOBITS = 1 << 28  # a sanity bound for zero-filled (.bss-like) sections

_SHN_NAMES = {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS, "SHN_COMMON": SHN_COMMON}
_STB = {"STB_LOCAL": STB_LOCAL, "STB_GLOBAL": STB_GLOBAL, "STB_WEAK": STB_WEAK}
_STT = {"STT_NOTYPE": STT_NOTYPE, "STT_OBJECT": STT_OBJECT, "STT_FUNC": STT_FUNC,
        "STT_SECTION": STT_SECTION, "STT_FILE": STT_FILE}


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    data: bytes  # zeros of `size` bytes for SHT_NOBITS
    link: int
    info: int

    @property
    def is_exec(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR) and self.type == SHT_PROGBITS


@dataclass(frozen=True)
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    visibility: str = "STV_DEFAULT"


@dataclass(frozen=True)
class Rel:
    offset: int  # byte offset inside the target section
    sym: int  # symbol index
    type: int


@dataclass
class ElfFile:
    sections: list[Section]
    symbols: list[Symbol]
    # target section index -> relocation entries (from .rel<name>)
    rels: dict[int, list[Rel]]
    rel_section_names: dict[int, str]

    def by_name(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None


def _enum(value: object, table: dict[str, int]) -> int:
    """pyelftools gives names for known values and ints otherwise; -1 marks 'something else'."""
    if isinstance(value, int):
        return value
    return table.get(str(value), -1)


def parse_elf(data: bytes, path: str | None = None) -> ElfFile:
    """Parse `data` as a BPF ELF object; every failure is an ObjectError naming what broke."""
    _check_header(data, path)
    try:
        return _parse(data, path)
    except ObjectError:
        raise
    except Exception as e:  # pyelftools raises ELFError, struct.error, ValueError, ... on garbage
        raise ObjectError(f"malformed ELF: {type(e).__name__}: {e}", path=path) from None


def _check_header(data: bytes, path: str | None) -> None:
    """Check identity bytes ourselves so the common mistakes get precise messages."""
    if len(data) < 64:
        raise ObjectError(f"file too short for an ELF header ({len(data)} bytes)", path=path)
    if data[:4] != b"\x7fELF":
        raise ObjectError("not an ELF file (bad magic)", path=path)
    if data[4] != 2:
        raise ObjectError(f"not ELFCLASS64 (EI_CLASS={data[4]})", path=path)
    if data[5] != 1:
        raise ObjectError(f"not little-endian (EI_DATA={data[5]})", path=path)
    e_type = int.from_bytes(data[16:18], "little")
    e_machine = int.from_bytes(data[18:20], "little")
    if e_machine != EM_BPF:
        raise ObjectError(f"e_machine is {e_machine}, not EM_BPF ({EM_BPF})", path=path)
    if e_type != ET_REL:
        raise ObjectError(f"e_type is {e_type}, not ET_REL ({ET_REL}): need a .o from clang -c",
                          path=path)


def _parse(data: bytes, path: str | None) -> ElfFile:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    n = elf.num_sections()
    if n == 0:
        raise ObjectError("ELF has no section headers", path=path)
    sections: list[Section] = []
    raw = []
    for i in range(n):
        sec = elf.get_section(i)
        h = sec.header
        raw.append(sec)
        stype = h["sh_type"]
        stype_num = _SHT.get(stype, stype) if isinstance(stype, str) else stype
        if not isinstance(stype_num, int):
            stype_num = -1
        size = int(h["sh_size"])
        if stype_num == SHT_NOBITS:
            if size > MAX_NOBITS:
                raise ObjectError(f"NOBITS section of {size} bytes is larger than the"
                                  f" {MAX_NOBITS}-byte limit", section=sec.name, path=path)
            body = bytes(size)
        elif stype_num == SHT_NULL:
            body = b""
        else:
            off = int(h["sh_offset"])
            if off + size > len(data):
                raise ObjectError(f"section data [{off}, {off + size}) lies beyond the end of the"
                                  f" file ({len(data)} bytes)", section=sec.name, path=path)
            body = data[off:off + size]
        sections.append(Section(i, sec.name, stype_num, int(h["sh_flags"]), size, body,
                                int(h["sh_link"]), int(h["sh_info"])))

    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if not symtabs:
        raise ObjectError("object has no symbol table (.symtab)", path=path)
    if len(symtabs) > 1:
        raise ObjectError("object has more than one symbol table", path=path)
    symtab = raw[symtabs[0].index]
    symbols: list[Symbol] = []
    for i in range(symtab.num_symbols()):
        s = symtab.get_symbol(i)
        info = s["st_info"]
        shndx = s["st_shndx"]
        if isinstance(shndx, str):
            if shndx not in _SHN_NAMES:
                raise ObjectError(f"symbol has unsupported section index {shndx}",
                                  symbol=s.name, path=path)
            shndx = _SHN_NAMES[shndx]
        elif not (0 <= shndx < n):
            raise ObjectError(f"symbol refers to section index {shndx} of {n}", symbol=s.name,
                              path=path)
        sym = Symbol(i, s.name, int(s["st_value"]), int(s["st_size"]), _enum(info["type"], _STT),
                     _enum(info["bind"], _STB), shndx, str(s["st_other"]["visibility"]))
        _check_symbol_bounds(sym, sections, path)
        symbols.append(sym)

    rels: dict[int, list[Rel]] = {}
    rel_names: dict[int, str] = {}
    for sec in sections:
        if sec.type not in (SHT_REL, SHT_RELA):
            continue
        target = sec.info
        if not (0 < target < n):
            raise ObjectError(f"relocation section targets section index {target}",
                              section=sec.name, path=path)
        if sec.type == SHT_RELA:
            if sections[target].is_exec:
                raise ObjectError("RELA relocations for code are not used by BPF",
                                  section=sec.name, path=path)
            continue
        if sec.link != symtabs[0].index:
            raise ObjectError("relocation section does not link to .symtab", section=sec.name,
                              path=path)
        entries = []
        rsec = raw[sec.index]
        for j in range(rsec.num_relocations()):
            r = rsec.get_relocation(j)
            sym = int(r["r_info_sym"])
            if sym >= len(symbols):
                raise ObjectError(f"relocation {j} names symbol index {sym} of {len(symbols)}",
                                  section=sec.name, path=path)
            entries.append(Rel(int(r["r_offset"]), sym, int(r["r_info_type"])))
        if target in rels:
            raise ObjectError("two relocation sections for one section", section=sec.name,
                              path=path)
        rels[target] = entries
        rel_names[target] = sec.name
    return ElfFile(sections, symbols, rels, rel_names)


_SHT = {"SHT_NULL": SHT_NULL, "SHT_PROGBITS": SHT_PROGBITS, "SHT_SYMTAB": SHT_SYMTAB,
        "SHT_STRTAB": SHT_STRTAB, "SHT_RELA": SHT_RELA, "SHT_NOBITS": SHT_NOBITS,
        "SHT_REL": SHT_REL}


def _check_symbol_bounds(sym: Symbol, sections: list[Section], path: str | None) -> None:
    """A symbol defined in a section must lie inside it: every later step (maps, globals, BTF
    DATASEC offsets, function extents) trusts st_value and st_size."""
    if sym.shndx in (SHN_UNDEF, SHN_ABS, SHN_COMMON) or sym.type in (STT_SECTION, STT_FILE):
        return
    sec = sections[sym.shndx]
    if sec.type == SHT_NULL:
        raise ObjectError("symbol is defined in the null section header", section=sec.name,
                          symbol=sym.name, path=path)
    if sym.value > sec.size or sym.size > sec.size - sym.value:
        raise ObjectError(f"symbol [{sym.value:#x}, +{sym.size:#x}) lies outside its section"
                          f" ({sec.size} bytes)", section=sec.name, symbol=sym.name, path=path)
