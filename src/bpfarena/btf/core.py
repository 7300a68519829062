"""CO-RE relocation resolution: the value libbpf would patch for one .BTF.ext core_relo record.

Semantics follow libbpf's relo_core (facts: access strings, candidate choice by essential name,
member matching through anonymous members, the field/type/enumval value rules); the code is ours.
A result either carries a value or asks for the instruction to be poisoned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BTFError
from .btf import BTF
from .ext import (
    ENUMVAL_EXISTS,
    ENUMVAL_VALUE,
    FIELD_BYTE_OFFSET,
    FIELD_BYTE_SIZE,
    FIELD_EXISTS,
    FIELD_LSHIFT_U64,
    FIELD_RSHIFT_U64,
    FIELD_SIGNED,
    TYPE_EXISTS,
    TYPE_ID_LOCAL,
    TYPE_ID_TARGET,
    TYPE_MATCHES,
    TYPE_SIZE,
)
from .types import INT_SIGNED, Kind

MAX_SPEC_LEN = 64
FIELD_KINDS = frozenset({FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED,
                         FIELD_LSHIFT_U64, FIELD_RSHIFT_U64})
TYPE_KINDS = frozenset({TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, TYPE_MATCHES})
ENUMVAL_KINDS = frozenset({ENUMVAL_EXISTS, ENUMVAL_VALUE})
KIND_NAMES = {
    FIELD_BYTE_OFFSET: "byte_off", FIELD_BYTE_SIZE: "byte_sz", FIELD_EXISTS: "field_exists",
    FIELD_SIGNED: "signed", FIELD_LSHIFT_U64: "lshift_u64", FIELD_RSHIFT_U64: "rshift_u64",
    TYPE_ID_LOCAL: "local_type_id", TYPE_ID_TARGET: "target_type_id",
    TYPE_EXISTS: "type_exists", TYPE_SIZE: "type_size", ENUMVAL_EXISTS: "enumval_exists",
    ENUMVAL_VALUE: "enumval_value", TYPE_MATCHES: "type_matches",
}
_COMPOSITE = (Kind.STRUCT, Kind.UNION)
_ENUMS = (Kind.ENUM, Kind.ENUM64)


def essential_name(name: str) -> str:
    """Drop a "___flavor" suffix: "task_struct___v1" -> "task_struct"."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        if (name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_"):
            return name[:i + 1]
    return name


@dataclass
class Accessor:
    type_id: int  # the struct/union (named access), array element type, or enum
    idx: int
    name: str | None = None


@dataclass
class Spec:
    btf: BTF
    root_type_id: int
    raw: list[int] = field(default_factory=list)
    access: list[Accessor] = field(default_factory=list)
    bit_offset: int = 0


@dataclass(frozen=True)
class CoreResult:
    """What to patch: `target_value` (unless `poison`), and the value the compiler assumed."""

    kind: int
    local_value: int
    target_value: int
    exists: bool  # a target candidate matched
    poison: bool  # libbpf would turn the instruction into an invalid call
    target_type_id: int = 0
    local_field_size: int = 0  # for FIELD_BYTE_OFFSET: size of the accessed field
    target_field_size: int = 0
    validate: bool = True  # False for bitfields: the compiler's value may legitimately differ


def _skip(btf: BTF, tid: int) -> tuple[int, object]:
    tid = btf.resolve(tid)
    return tid, btf.type(tid)


def parse_spec(btf: BTF, type_id: int, access: str, kind: int) -> Spec:
    """The local side: walk the access string over the local type."""
    try:
        raw = [int(p) for p in access.split(":")] if access else []
    except ValueError:
        raise BTFError(f"bad CO-RE access string {access!r}", type_id=type_id) from None
    if not raw or any(r < 0 for r in raw) or len(raw) > MAX_SPEC_LEN:
        raise BTFError(f"bad CO-RE access string {access!r}", type_id=type_id)
    spec = Spec(btf, type_id, raw)
    if kind in TYPE_KINDS:
        if raw != [0]:
            raise BTFError(f"type-based CO-RE relocation with access {access!r}", type_id=type_id)
        return spec
    tid, t = _skip(btf, type_id)
    if kind in ENUMVAL_KINDS:
        if t.kind not in _ENUMS or len(raw) != 1 or raw[0] >= len(t.values):
            raise BTFError(f"bad enumerator CO-RE access {access!r}", type_id=type_id)
        spec.access.append(Accessor(tid, raw[0], t.values[raw[0]].name))
        return spec
    if kind not in FIELD_KINDS:
        raise BTFError(f"unknown CO-RE relocation kind {kind}", type_id=type_id)
    spec.access.append(Accessor(type_id, raw[0]))
    spec.bit_offset = raw[0] * btf.sizeof(tid) * 8
    cur = type_id
    for idx in raw[1:]:
        cur, t = _skip(btf, cur)
        if t.kind in _COMPOSITE:
            if idx >= len(t.members):
                raise BTFError(f"CO-RE access {access!r}: member {idx} out of range",
                               type_id=cur)
            m = t.members[idx]
            spec.bit_offset += t.member_bit_offset(m)
            if m.name:
                spec.access.append(Accessor(cur, idx, m.name))
            cur = m.type
        elif t.kind == Kind.ARRAY:
            cur = btf.resolve(t.type)
            spec.access.append(Accessor(cur, idx))
            spec.bit_offset += idx * btf.sizeof(cur) * 8
        else:
            raise BTFError(f"CO-RE access {access!r} goes into a {t.kind.name}", type_id=cur)
    return spec


def _kinds_compat(a: Kind, b: Kind) -> bool:
    return a == b or (a in _ENUMS and b in _ENUMS)


def fields_compat(lb: BTF, lid: int, tb: BTF, tid: int) -> bool:
    for _ in range(32):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if lt.kind in _COMPOSITE and tt.kind in _COMPOSITE:
            return True
        if not _kinds_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (Kind.PTR, Kind.FLOAT):
            return True
        if k in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            return essential_name(lt.name) == essential_name(tt.name)
        if k == Kind.INT:
            return lt.bit_offset == 0 and tt.bit_offset == 0
        if k == Kind.ARRAY:
            lid, tid = lt.type, tt.type
            continue
        return False
    return False


def types_compat(lb: BTF, lid: int, tb: BTF, tid: int, depth: int = 32) -> bool:
    """libbpf's shallow type compatibility (used by TYPE_* relocations)."""
    if depth <= 0:
        return False
    lid, lt = _skip(lb, lid)
    tid, tt = _skip(tb, tid)
    if not _kinds_compat(lt.kind, tt.kind):
        return False
    k = lt.kind
    if k in (Kind.VOID, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD, Kind.FLOAT):
        return True
    if k == Kind.INT:
        return lt.bit_offset == 0 and tt.bit_offset == 0
    if k == Kind.PTR:
        return types_compat(lb, lt.type, tb, tt.type, depth - 1)
    if k == Kind.ARRAY:
        return types_compat(lb, lt.type, tb, tt.type, depth - 1)
    if k == Kind.FUNC_PROTO:
        if len(lt.params) != len(tt.params):
            return False
        return all(types_compat(lb, a.type, tb, b.type, depth - 1)
                   for a, b in zip(lt.params, tt.params, strict=True)) and \
            types_compat(lb, lt.type, tb, tt.type, depth - 1)
    return False


def _match_member(lb: BTF, lacc: Accessor, tb: BTF, tid: int, spec: Spec,
                  depth: int = 0) -> int | None:
    """Find the local member's name in target `tid` (through anonymous members); returns the
    member's type id, or None. Updates spec's bit offset and accessors on success."""
    if depth > MAX_SPEC_LEN:
        return None
    tid, tt = _skip(tb, tid)
    if tt.kind not in _COMPOSITE:
        return None
    lt = lb.type(lacc.type_id)
    lmem = lt.members[lacc.idx]
    for i, m in enumerate(tt.members):
        off = tt.member_bit_offset(m)
        spec.bit_offset += off
        spec.raw.append(i)
        if not m.name:
            found = _match_member(lb, lacc, tb, m.type, spec, depth + 1)
            if found is not None:
                return found
        elif m.name == lmem.name:
            if fields_compat(lb, lmem.type, tb, m.type):
                spec.access.append(Accessor(tid, i, m.name))
                return m.type
            spec.bit_offset -= off
            spec.raw.pop()
            return None
        spec.bit_offset -= off
        spec.raw.pop()
    return None


def match_spec(local: Spec, tb: BTF, target_id: int, kind: int) -> Spec | None:
    """The target side for one candidate, or None when it does not match."""
    spec = Spec(tb, target_id)
    lb = local.btf
    if kind in TYPE_KINDS:
        return spec if types_compat(lb, local.root_type_id, tb, target_id) else None
    if kind in ENUMVAL_KINDS:
        tid, tt = _skip(tb, target_id)
        if tt.kind not in _ENUMS:
            return None
        want = essential_name(local.access[0].name or "")
        for i, e in enumerate(tt.values):
            if e.name and essential_name(e.name) == want:
                spec.access.append(Accessor(tid, i, e.name))
                spec.raw.append(i)
                return spec
        return None
    tid = target_id
    for i, lacc in enumerate(local.access):
        tid, tt = _skip(tb, tid)
        if lacc.name is not None:
            nxt = _match_member(lb, lacc, tb, tid, spec)
            if nxt is None:
                return None
            tid = nxt
            continue
        if i > 0:
            if tt.kind != Kind.ARRAY:
                return None
            prev = spec.access[-1] if spec.access else None
            flex = (prev is not None and prev.name is not None and tt.nelems == 0
                    and prev.idx == len(tb.type(prev.type_id).members) - 1)
            if not flex and lacc.idx >= tt.nelems:
                return None
            tid = tb.resolve(tt.type)
        spec.access.append(Accessor(tid, lacc.idx))
        spec.raw.append(lacc.idx)
        spec.bit_offset += lacc.idx * tb.sizeof(tid) * 8
    return spec


@dataclass
class _Val:
    value: int = 0
    poison: bool = False
    field_size: int = 0
    type_id: int = 0
    validate: bool = True


def _calc(kind: int, spec: Spec | None, local_type_id: int) -> _Val:
    if kind in FIELD_KINDS:
        return _calc_field(kind, spec)
    if kind in TYPE_KINDS:
        if kind == TYPE_ID_LOCAL:
            return _Val(local_type_id)
        if spec is None:
            return _Val(0)
        if kind == TYPE_ID_TARGET:
            return _Val(spec.root_type_id)
        if kind in (TYPE_EXISTS, TYPE_MATCHES):
            return _Val(1)
        return _Val(spec.btf.sizeof(spec.root_type_id))
    if kind == ENUMVAL_EXISTS:
        return _Val(1 if spec is not None else 0)
    if spec is None:
        return _Val(poison=True)
    acc = spec.access[0]
    return _Val(spec.btf.type(acc.type_id).values[acc.idx].value)


def _calc_field(kind: int, spec: Spec | None) -> _Val:
    if kind == FIELD_EXISTS:
        return _Val(1 if spec is not None else 0)
    if spec is None:
        return _Val(poison=True)
    btf = spec.btf
    acc = spec.access[-1]
    if acc.name is None:
        sz = btf.sizeof(acc.type_id)
        if kind == FIELD_BYTE_OFFSET:
            return _Val(spec.bit_offset // 8, field_size=sz, type_id=acc.type_id)
        if kind == FIELD_BYTE_SIZE:
            return _Val(sz)
        raise BTFError(f"CO-RE relocation {KIND_NAMES[kind]} on an array element",
                       type_id=acc.type_id)
    t = btf.type(acc.type_id)
    m = t.members[acc.idx]
    ftid, mt = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = t.member_bitfield_size(m)
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        if byte_sz <= 0:
            raise BTFError("CO-RE bitfield of zero size", type_id=ftid)
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise BTFError("CO-RE bitfield does not fit in 8 bytes", type_id=ftid)
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = btf.sizeof(ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    v = _Val(validate=not bitfield)
    if kind == FIELD_BYTE_OFFSET:
        v.value, v.field_size, v.type_id = byte_off, byte_sz, ftid
    elif kind == FIELD_BYTE_SIZE:
        v.value = byte_sz
    elif kind == FIELD_SIGNED:
        v.value = int((mt.kind in _ENUMS and bool(mt.kind_flag))
                      or (mt.kind == Kind.INT and bool(mt.encoding & INT_SIGNED)))
        v.validate = True
    elif kind == FIELD_LSHIFT_U64:
        v.value = 64 - (bit_off + bit_sz - byte_off * 8)
    else:
        v.value = 64 - bit_sz
    return v


def candidates(local_btf: BTF, local_type_id: int, target: BTF) -> list[int]:
    """Target ids of a compatible kind whose essential name equals the local type's."""
    lt = local_btf.type(local_type_id)
    if not lt.name:
        raise BTFError("CO-RE relocation against an anonymous type", type_id=local_type_id)
    want = essential_name(lt.name)
    idx = getattr(target, "_essential_index", None)
    if idx is None:
        idx = {}
        for name in target.names():
            idx.setdefault(essential_name(name), []).append(name)
        target._essential_index = idx  # type: ignore[attr-defined]
    out = []
    for name in idx.get(want, ()):
        for tid in target.find_all(name):
            if _kinds_compat(lt.kind, target.kind(tid)):
                out.append(tid)
    return sorted(set(out))


def resolve_relo(local_btf: BTF, local_type_id: int, access: str, kind: int,
                 target: BTF) -> CoreResult:
    """Resolve one CO-RE relocation against `target` (e.g. vmlinux BTF)."""
    local = parse_spec(local_btf, local_type_id, access, kind)
    lval = _calc(kind, local, local_type_id)
    if kind == TYPE_ID_LOCAL:
        return CoreResult(kind, local_type_id, local_type_id, True, False, local_type_id)
    matched: Spec | None = None
    res: _Val | None = None
    for cand in candidates(local_btf, local_type_id, target):
        spec = match_spec(local, target, cand, kind)
        if spec is None:
            continue
        val = _calc(kind, spec, local_type_id)
        if matched is None:
            matched, res = spec, val
            continue
        if kind in FIELD_KINDS and spec.bit_offset != matched.bit_offset:
            raise BTFError(f"CO-RE {KIND_NAMES[kind]} is ambiguous: candidates [{matched.root_type_id}]"
                           f" and [{cand}] disagree on the field offset", type_id=local_type_id)
        assert res is not None
        if val.poison != res.poison or (not val.poison and val.value != res.value):
            raise BTFError(f"CO-RE {KIND_NAMES[kind]} is ambiguous: candidates [{matched.root_type_id}]"
                           f" and [{cand}] give different values", type_id=local_type_id)
    if matched is None:
        res = _calc(kind, None, local_type_id)
    assert res is not None
    return CoreResult(kind, lval.value, res.value, matched is not None, res.poison,
                      matched.root_type_id if matched is not None else 0,
                      lval.field_size, res.field_size, lval.validate and res.validate)
