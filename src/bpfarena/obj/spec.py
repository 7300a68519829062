"""Pure descriptions of a BPF object: what `ObjectSpec.from_file` returns and back ends load.

Nothing here depends on the running kernel: map fds, kfunc BTF ids and arena placement are decided
when a back end loads the spec. Instruction indices count 8-byte slots (an ld_imm64 takes two).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..btf import BTF
    from ..isa import Instruction


class RelocKind(StrEnum):
    MAP = "map"  # ld_imm64 of a map's fd (BPF_PSEUDO_MAP_FD, src 1); target = map name
    MAP_VALUE = "map_value"  # ld_imm64 into a global-data map's value (src 2); target = map name
    ARENA = "arena"  # ld_imm64 of an arena global; target = arena map name, offset in the image
    KFUNC = "kfunc"  # call of a __ksym function (src 2, imm = BTF id); target = function name
    KSYM = "ksym"  # ld_imm64 of a typed __ksym variable; target = variable name


@dataclass(frozen=True)
class Relocation:
    """One instruction the loader must patch. `offset` is the addend inside the target."""

    insn_index: int
    kind: RelocKind
    target: str
    offset: int = 0
    weak: bool = False


@dataclass(frozen=True)
class CoreRelo:
    """A CO-RE relocation (.BTF.ext core_relo) against local type `type_id` of the object's BTF."""

    insn_index: int
    type_id: int
    access: str  # e.g. "0:1:2"
    kind: int  # enum bpf_core_relo_kind


@dataclass(frozen=True)
class FuncInfo:
    insn_index: int
    type_id: int


@dataclass(frozen=True)
class LineInfo:
    insn_index: int
    file: str
    line: str
    line_num: int
    column: int


@dataclass
class ProgramSpec:
    """An entry program, with its subprograms already linked in after it."""

    name: str
    section: str
    prog_type: int
    expected_attach_type: int = 0
    attach_to: str | None = None
    sleepable: bool = False
    insns: list[Instruction] = field(default_factory=list)
    relocations: list[Relocation] = field(default_factory=list)
    core_relos: list[CoreRelo] = field(default_factory=list)
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    subprograms: list[str] = field(default_factory=list)  # names linked in, in order
    license: str = "GPL"
    # FUNC type id of the entry function in the object's BTF, when present
    btf_func_id: int | None = None
    # BPF_PROG_LOAD prog_flags the section name implies (e.g. BPF_F_XDP_HAS_FRAGS for xdp.frags)
    prog_flags: int = 0


@dataclass(frozen=True)
class VarSpec:
    """A global variable inside a data section (or the arena image)."""

    name: str
    offset: int
    size: int
    type_id: int  # BTF type id of the variable's type (0 if the object has no BTF)
    section: str


@dataclass
class MapSpec:
    """A map: from `.maps` (BTF-defined), or a global-data map for `.data`/`.bss`/`.rodata`."""

    name: str
    type: int
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    flags: int = 0
    map_extra: int = 0
    pinning: int = 0
    numa_node: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    btf_var_id: int = 0  # the VAR in `.maps`, 0 for data maps
    section: str = ".maps"
    data: bytes | None = None  # initial value of a global-data map (zeros for .bss)
    variables: dict[str, VarSpec] = field(default_factory=dict)  # global-data maps only
    readonly: bool = False  # .rodata: frozen after the initial value is written
    inner: MapSpec | None = None

    @property
    def is_arena(self) -> bool:
        return self.type == 33

    @property
    def is_data(self) -> bool:
        return self.data is not None


@dataclass
class ObjectSpec:
    """Everything one .bpf.o says, decoded. Equal inputs give equal specs."""

    programs: dict[str, ProgramSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    # the parsed BTF is mutable and lazily decoded, so equality goes by `btf_raw` instead
    btf: BTF | None = field(default=None, compare=False, repr=False)
    license: str = "GPL"
    kernel_version: int = 0
    # arena globals (.addr_space.1): the image as compiled, and its variables by name
    arena_map: str | None = None
    arena_image: bytes = b""
    arena_vars: dict[str, VarSpec] = field(default_factory=dict)
    # __ksym externs: name -> {"kind": "func"|"var", "weak": bool, "btf_id": local BTF id}
    externs: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str | None = None
    # raw .BTF / .BTF.ext bytes as in the file (what the kernel loader hands to BPF_BTF_LOAD after
    # libbpf-style DATASEC fixups), and the facts those fixups need: section sizes by name and
    # defined symbols' values (offsets in their sections) by name
    btf_raw: bytes = field(default=b"", repr=False)
    btf_ext_raw: bytes = field(default=b"", repr=False)
    section_sizes: dict[str, int] = field(default_factory=dict, repr=False)
    symbol_values: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: str) -> ObjectSpec:
        from .reader import read_object
        return read_object(path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> ObjectSpec:
        from .reader import read_object_bytes
        return read_object_bytes(data, name)

    def set_global(self, name: str, value: Any) -> None:
        """Set a global's initial value before loading, typed by BTF (as a skeleton's rodata).

        Works for `.data`/`.bss`/`.rodata` variables (`const volatile` knobs included) and for
        arena globals; the value is what `obj.globals[name] = value` would accept.
        """
        from ..view.values import encode_value

        for ms in self.maps.values():
            var = ms.variables.get(name) if ms.data is not None else None
            if var is not None:
                buf = bytearray(ms.data or b"")
                buf[var.offset:var.offset + var.size] = encode_value(self.btf, var.type_id, value,
                                                                     var.size)
                ms.data = bytes(buf)
                return
        var = self.arena_vars.get(name)
        if var is not None:
            buf = bytearray(self.arena_image)
            buf[var.offset:var.offset + var.size] = encode_value(self.btf, var.type_id, value,
                                                                 var.size)
            self.arena_image = bytes(buf)
            return
        raise KeyError(f"no global variable named {name!r} in this object")

    @property
    def arena(self) -> MapSpec | None:
        return self.maps.get(self.arena_map) if self.arena_map else None
