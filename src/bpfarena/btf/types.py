"""BTF type records as plain dataclasses: what `parse` decodes and `BTF.to_bytes` encodes.

One `Type` class for every kind keeps generic code (resolve, layout, encoding) free of isinstance
ladders; the kind-specific fields are simply unused for other kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Kind(IntEnum):
    """BTF_KIND_* (include/uapi/linux/btf.h)."""

    VOID = 0  # type id 0; never stored
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


MAX_KIND = 19

# BTF_INT_* encoding bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

# FUNC linkage / VAR linkage
LINKAGE_STATIC = 0
LINKAGE_GLOBAL = 1
LINKAGE_EXTERN = 2

# kinds whose size_or_type is a size
SIZED_KINDS = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.DATASEC, Kind.FLOAT,
                         Kind.ENUM64})
# kinds whose size_or_type is a type id
REF_KINDS = frozenset({Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                       Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR, Kind.DECL_TAG, Kind.TYPE_TAG})
# qualifiers and aliases that `resolve` looks through
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                            Kind.TYPE_TAG})

KIND_NAMES = {k.name.lower(): k for k in Kind}


def kind_of(kind: int | str) -> Kind:
    """Accept Kind, int, or a name such as "FUNC", "struct" (case-insensitive)."""
    if isinstance(kind, str):
        try:
            return KIND_NAMES[kind.lower()]
        except KeyError:
            raise ValueError(f"unknown BTF kind name {kind!r}") from None
    return Kind(kind)


@dataclass
class Member:
    """A struct/union member. `offset` is the raw word: bits, or bitfield_size<<24|bits (kflag)."""

    name: str
    type: int
    offset: int = 0
    name_off: int = -1


@dataclass
class EnumValue:
    name: str
    value: int
    name_off: int = -1


@dataclass
class Param:
    name: str
    type: int
    name_off: int = -1


@dataclass
class VarSecinfo:
    """One variable of a DATASEC: VAR type id, byte offset in the section, size."""

    type: int
    offset: int
    size: int


@dataclass
class Type:
    """One BTF type record.

    `size` is used by sized kinds (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC); `type` by
    referring kinds (PTR, TYPEDEF, qualifiers, FUNC, FUNC_PROTO return, VAR, DECL_TAG, TYPE_TAG) and
    by ARRAY (element type). `linkage` is FUNC's vlen / VAR's linkage word. `name_off` remembers the
    string offset it was decoded from, so unmodified records re-encode byte for byte.
    """

    kind: Kind
    name: str = ""
    kind_flag: int = 0
    size: int = 0
    type: int = 0
    # INT
    encoding: int = 0
    bit_offset: int = 0
    bits: int = 0
    # ARRAY
    index_type: int = 0
    nelems: int = 0
    # STRUCT / UNION
    members: list[Member] = field(default_factory=list)
    # ENUM / ENUM64
    values: list[EnumValue] = field(default_factory=list)
    # FUNC_PROTO
    params: list[Param] = field(default_factory=list)
    # FUNC / VAR
    linkage: int = 0
    # DATASEC
    vars: list[VarSecinfo] = field(default_factory=list)
    # DECL_TAG (-1: the tag is on the type itself)
    component_idx: int = -1
    name_off: int = -1

    @property
    def vlen(self) -> int:
        k = self.kind
        if k in (Kind.STRUCT, Kind.UNION):
            return len(self.members)
        if k in (Kind.ENUM, Kind.ENUM64):
            return len(self.values)
        if k == Kind.FUNC_PROTO:
            return len(self.params)
        if k == Kind.DATASEC:
            return len(self.vars)
        if k == Kind.FUNC:
            return self.linkage
        return 0

    @property
    def is_signed_enum(self) -> bool:
        return self.kind in (Kind.ENUM, Kind.ENUM64) and bool(self.kind_flag)

    def member_bit_offset(self, m: Member) -> int:
        return m.offset & 0xFFFFFF if self.kind_flag else m.offset

    def member_bitfield_size(self, m: Member) -> int:
        return m.offset >> 24 if self.kind_flag else 0


VOID = Type(Kind.VOID, name="void", name_off=0)


@dataclass(frozen=True)
class MemberInfo:
    """A member as layout code wants it: bit offset and bitfield size (0 = not a bitfield)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int

    @property
    def byte_offset(self) -> int:
        return self.bit_offset // 8
