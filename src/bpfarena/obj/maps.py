"""BTF-defined maps (the `.maps` section) and global-data maps (.data/.bss/.rodata).

A `.maps` variable is a struct whose members encode attributes by their *types*, the libbpf way:
`__uint(name, v)` is `int (*name)[v]` (v = the array's nelems), `__type(name, T)` is `T *name`,
`__ulong(name, v)` is an enum whose single enumerator is v, and `__array(values, ...)` is an
array of pointers to an inner map definition.
"""

from __future__ import annotations

from ..btf.types import MODIFIER_KINDS, Kind, Type
from ..errors import ObjectError
from .elf import STT_SECTION, ElfFile, Section, Symbol
from .spec import MapSpec, VarSpec

BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_ARENA = 33
BPF_F_RDONLY_PROG = 0x80
BPF_F_MMAPABLE = 0x400
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1  # pinned at <pin root>/<map name>, reused when compatible

INT_ATTRS = ("type", "key_size", "value_size", "max_entries", "map_flags", "numa_node",
             "pinning", "map_extra")


class BTFView:
    """The few BTF questions the object reader asks, behind one small interface."""

    def __init__(self, btf: object) -> None:
        self.btf = btf

    def get(self, tid: int) -> Type:
        try:
            return self.btf.type(tid)  # type: ignore[attr-defined]
        except ObjectError:
            raise
        except Exception as e:
            raise ObjectError(f"BTF has no type id {tid}: {e}", section=".BTF") from None

    def strip(self, tid: int) -> tuple[int, Type]:
        """Skip typedefs and qualifiers; returns the id and record underneath."""
        seen = 0
        t = self.get(tid)
        while t.kind in MODIFIER_KINDS:
            tid = t.type
            t = self.get(tid)
            seen += 1
            if seen > 64:
                raise ObjectError(f"BTF type {tid}: modifier chain loops", section=".BTF")
        return tid, t

    def sizeof(self, tid: int) -> int:
        try:
            return int(self.btf.sizeof(tid))  # type: ignore[attr-defined]
        except ObjectError:
            raise
        except Exception as e:
            raise ObjectError(f"cannot size BTF type {tid}: {e}", section=".BTF") from None

    def datasecs(self) -> dict[str, tuple[int, Type]]:
        out: dict[str, tuple[int, Type]] = {}
        for tid, t in self.items():
            if t.kind == Kind.DATASEC:
                out.setdefault(t.name, (tid, t))
        return out

    def items(self):
        n = len(self.btf)  # type: ignore[arg-type]
        for tid in range(1, n):
            yield tid, self.get(tid)


def _sym_by_name(elf: ElfFile, sec: Section) -> dict[str, Symbol]:
    out: dict[str, Symbol] = {}
    for s in elf.symbols:
        if s.shndx == sec.index and s.name and s.type != STT_SECTION:
            out.setdefault(s.name, s)
    return out


def section_vars(elf: ElfFile, sec: Section, bv: BTFView | None,
                 datasec: tuple[int, Type] | None) -> dict[str, VarSpec]:
    """Variables of a data section: BTF DATASEC entries placed by their ELF symbols, then any
    named object symbols BTF does not describe (type id 0)."""
    syms = _sym_by_name(elf, sec)
    out: dict[str, VarSpec] = {}
    if bv is not None and datasec is not None:
        for vi in datasec[1].vars:
            var = bv.get(vi.type)
            if var.kind != Kind.VAR:
                raise ObjectError(f"DATASEC entry {vi.type} is a {var.kind.name}, not a VAR",
                                  section=sec.name)
            sym = syms.get(var.name)
            offset = sym.value if sym is not None else vi.offset
            size = vi.size or (sym.size if sym is not None else 0)
            if offset + size > sec.size:
                raise ObjectError(f"variable [{offset}, +{size}) lies outside the section"
                                  f" ({sec.size} bytes)", section=sec.name, symbol=var.name)
            out[var.name] = VarSpec(var.name, offset, size, var.type, sec.name)
    for name, sym in sorted(syms.items(), key=lambda kv: (kv[1].value, kv[0])):
        if name in out:
            continue
        if sym.value + sym.size > sec.size:
            raise ObjectError(f"symbol [{sym.value}, +{sym.size}) lies outside the section"
                              f" ({sec.size} bytes)", section=sec.name, symbol=name)
        out[name] = VarSpec(name, sym.value, sym.size, 0, sec.name)
    return dict(sorted(out.items(), key=lambda kv: (kv[1].offset, kv[0])))


def is_data_section(sec: Section) -> bool:
    n = sec.name
    return n in (".data", ".bss", ".rodata") or n.startswith((".data.", ".rodata.", ".bss."))


def data_map(elf: ElfFile, sec: Section, bv: BTFView | None,
             datasecs: dict[str, tuple[int, Type]]) -> MapSpec:
    """A global-data map: one ARRAY element holding the whole section, like libbpf."""
    readonly = sec.name == ".rodata" or sec.name.startswith(".rodata.")
    flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if readonly else 0)
    return MapSpec(name=sec.name, type=BPF_MAP_TYPE_ARRAY, key_size=4, value_size=sec.size,
                   max_entries=1, flags=flags, section=sec.name, data=bytes(sec.data),
                   variables=section_vars(elf, sec, bv, datasecs.get(sec.name)),
                   readonly=readonly)


def _int_attr(bv: BTFView, m_type: int, map_name: str, attr: str) -> int:
    _, t = bv.strip(m_type)
    if t.kind == Kind.PTR:
        _, arr = bv.strip(t.type)
        if arr.kind != Kind.ARRAY:
            raise ObjectError(f"map attribute {attr!r} is a pointer to {arr.kind.name}, not to"
                              " an array (__uint)", section=".maps", symbol=map_name)
        return arr.nelems
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        if len(t.values) != 1:
            raise ObjectError(f"map attribute {attr!r} is an enum with {len(t.values)} values,"
                              " want exactly one (__ulong)", section=".maps", symbol=map_name)
        return t.values[0].value & 0xFFFFFFFFFFFFFFFF
    raise ObjectError(f"map attribute {attr!r} has BTF kind {t.kind.name}; want __uint or"
                      " __ulong", section=".maps", symbol=map_name)


def parse_map_def(bv: BTFView, tid: int, name: str, inner_ok: bool = True) -> MapSpec:
    """Decode the struct at BTF type `tid` into a MapSpec."""
    _, st = bv.strip(tid)
    if st.kind != Kind.STRUCT:
        raise ObjectError(f"map definition is a {st.kind.name}, not a struct", section=".maps",
                          symbol=name)
    attrs: dict[str, int] = {}
    spec = MapSpec(name=name, type=0)
    for m in st.members:
        if m.name in INT_ATTRS:
            attrs[m.name] = _int_attr(bv, m.type, name, m.name)
        elif m.name in ("key", "value"):
            _, p = bv.strip(m.type)
            if p.kind != Kind.PTR:
                raise ObjectError(f"map attribute {m.name!r} must be a pointer (__type)",
                                  section=".maps", symbol=name)
            size = bv.sizeof(p.type)
            explicit = attrs.get(m.name + "_size")
            if explicit is not None and explicit != size:
                raise ObjectError(f"{m.name}_size {explicit} conflicts with sizeof({m.name})"
                                  f" = {size}", section=".maps", symbol=name)
            attrs[m.name + "_size"] = size
            if m.name == "key":
                spec.key_type_id = p.type
            else:
                spec.value_type_id = p.type
        elif m.name == "values":
            _, arr = bv.strip(m.type)
            if arr.kind != Kind.ARRAY:
                raise ObjectError("map attribute 'values' must be an array (__array)",
                                  section=".maps", symbol=name)
            _, p = bv.strip(arr.type)
            if p.kind != Kind.PTR:
                raise ObjectError("map 'values' elements must be pointers", section=".maps",
                                  symbol=name)
            _, target = bv.strip(p.type)
            if target.kind == Kind.STRUCT:
                if not inner_ok:
                    raise ObjectError("inner map definitions nest too deeply", section=".maps",
                                      symbol=name)
                spec.inner = parse_map_def(bv, p.type, name + ".inner", inner_ok=False)
            elif target.kind != Kind.FUNC_PROTO:
                raise ObjectError(f"map 'values' point to {target.kind.name}; want an inner map"
                                  " struct or a program", section=".maps", symbol=name)
        else:
            raise ObjectError(f"unknown map attribute {m.name!r}", section=".maps", symbol=name)
    spec.type = attrs.get("type", 0)
    spec.key_size = attrs.get("key_size", 0)
    spec.value_size = attrs.get("value_size", 0)
    spec.max_entries = attrs.get("max_entries", 0)
    spec.flags = attrs.get("map_flags", 0)
    spec.numa_node = attrs.get("numa_node", 0)
    spec.pinning = attrs.get("pinning", 0)
    if spec.pinning not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME):
        raise ObjectError(f"invalid pinning value {spec.pinning}: 0 (LIBBPF_PIN_NONE) and 1 "
                          "(LIBBPF_PIN_BY_NAME) are the only ones", section=".maps", symbol=name)
    spec.map_extra = attrs.get("map_extra", 0)
    if spec.inner is not None or spec.type in (BPF_MAP_TYPE_ARRAY_OF_MAPS,
                                               BPF_MAP_TYPE_HASH_OF_MAPS,
                                               BPF_MAP_TYPE_PROG_ARRAY):
        # map-in-map and prog arrays hold 4-byte ids/fds; libbpf fills the sizes in the same way
        spec.key_size = spec.key_size or 4
        spec.value_size = spec.value_size or 4
    if "type" not in attrs:
        raise ObjectError("map definition has no 'type'", section=".maps", symbol=name)
    return spec


def btf_maps(elf: ElfFile, sec: Section, bv: BTFView | None,
             datasecs: dict[str, tuple[int, Type]]) -> list[MapSpec]:
    """Every map in `.maps`, in symbol-offset order."""
    if bv is None:
        raise ObjectError("a .maps section needs BTF to describe its maps, and .BTF is missing",
                          section=".maps")
    ds = datasecs.get(".maps")
    if ds is None:
        raise ObjectError("BTF has no DATASEC '.maps' describing the map definitions",
                          section=".maps")
    syms = _sym_by_name(elf, sec)
    found: list[tuple[int, MapSpec]] = []
    for vi in ds[1].vars:
        var = bv.get(vi.type)
        if var.kind != Kind.VAR:
            raise ObjectError(f"DATASEC '.maps' entry {vi.type} is a {var.kind.name}, not a VAR",
                              section=".maps")
        sym = syms.get(var.name)
        if sym is None:
            raise ObjectError("map has BTF but no ELF symbol in .maps", section=".maps",
                              symbol=var.name)
        spec = parse_map_def(bv, var.type, var.name)
        spec.btf_var_id = vi.type
        found.append((sym.value, spec))
    described = {m.name for _, m in found}
    for name in syms:
        if name not in described:
            raise ObjectError("map symbol has no BTF description in DATASEC '.maps'",
                              section=".maps", symbol=name)
    found.sort(key=lambda p: (p[0], p[1].name))
    return [m for _, m in found]


def map_at(elf: ElfFile, sec: Section, offset: int) -> str | None:
    """The name of the map symbol in .maps starting at byte `offset`."""
    for s in elf.symbols:
        if s.shndx == sec.index and s.name and s.type != STT_SECTION and s.value == offset:
            return s.name
    return None

