"""The `BTF` object: lazy type access, name lookup, C layout, naming, editing and re-encoding.

Kernel BTF holds ~150k types, so `parse` only indexes record offsets in one pass; a type is decoded
when first asked for, and the name index is built on the first lookup by name.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from ..errors import BTFError
from . import reader
from .types import (
    INT_SIGNED,
    MODIFIER_KINDS,
    VOID,
    Kind,
    MemberInfo,
    Type,
    kind_of,
)

MAX_DEPTH = 64  # longest type chain we follow; deeper means a loop or garbage
EAGER_LIMIT = 1 << 20  # BTF smaller than this (object files) is fully checked at parse time
PTR_SIZE = 8


def parse(data: bytes | bytearray | memoryview, base: BTF | None = None) -> BTF:
    """Parse raw BTF (a .BTF section or /sys/kernel/btf/*); `base` for split BTF (modules)."""
    return BTF(bytes(data), base)


def parse_file(path: str, base: BTF | None = None) -> BTF:
    """Parse BTF from a file such as /sys/kernel/btf/vmlinux."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BTFError(f"cannot read BTF from {path}: {e.strerror}") from None
    return BTF(data, base)


class BTF:
    """Types by id (0 = void), strings, and the C view of them (sizes, offsets, names)."""

    def __init__(self, data: bytes, base: BTF | None = None) -> None:
        self.base = base
        self.header = hdr = reader.read_header(data)
        self._data = data
        t0 = hdr.hdr_len + hdr.type_off
        s0 = hdr.hdr_len + hdr.str_off
        self._strs = data[s0:s0 + hdr.str_len]
        if base is None and self._strs and self._strs[0] != 0:
            raise BTFError("BTF string section does not start with an empty string",
                           offset=s0)
        if self._strs and self._strs[-1] != 0:
            raise BTFError("BTF string section is not NUL-terminated", offset=s0 + hdr.str_len)
        self._words = reader.load_words(data, t0, hdr.type_len)
        self._offs = reader.index_records(self._words, t0)
        self.start_id = len(base) if base is not None else 1
        self.start_str = base._str_end() if base is not None else 0
        self._cache: dict[int, Type] = {}
        self._added: list[Type] = []
        self._names: dict[int, str] = {}
        self._name_index: dict[str, list[int]] | None = None
        self._name_offs: list[int] | None = None
        self._member_cache: dict[int, Any] = {}  # for view/: flattened members by type id
        self._align_cache: dict[int, int] = {}
        self._name_cache: dict[int, str] = {}
        self._tag_index: dict[int, list[int]] | None = None
        self._new_strs: list[bytes] = []
        self._str_lookup: dict[str, int] | None = None
        if len(data) < EAGER_LIMIT:
            self.validate()

    # --- strings ------------------------------------------------------------------------------
    def _str_end(self) -> int:
        return self.start_str + len(self._strs) + sum(len(s) for s in self._new_strs)

    def string(self, off: int) -> str:
        """The string at offset `off` of the (combined base + own) string table."""
        s = self._names.get(off)
        if s is not None:
            return s
        if off < self.start_str:
            assert self.base is not None
            return self.base.string(off)
        local = off - self.start_str
        if local < len(self._strs):
            end = self._strs.find(b"\0", local)
            raw = self._strs[local:end]
        else:
            raw = self._new_string_at(local - len(self._strs))
        try:
            s = raw.decode()
        except UnicodeDecodeError:
            raise BTFError(f"BTF string at offset {off} is not UTF-8") from None
        self._names[off] = s
        return s

    def _new_string_at(self, local: int) -> bytes:
        pos = 0
        for s in self._new_strs:
            if pos == local:
                return s[:-1]
            pos += len(s)
        raise BTFError(f"BTF string offset {local + self.start_str + len(self._strs)} "
                       "is out of range")

    def _checked_string(self, off: int) -> str:
        if off >= self._str_end():
            raise BTFError(f"BTF string offset {off} is out of range (table is "
                           f"{self._str_end()} bytes)", offset=off)
        return self.string(off)

    def add_string(self, s: str) -> int:
        """Offset of `s` in the string table, appending it if it is new."""
        if self._str_lookup is None:
            self._str_lookup = {}
            pos = 0
            for part in self._strs.split(b"\0")[:-1]:
                try:
                    self._str_lookup.setdefault(part.decode(), self.start_str + pos)
                except UnicodeDecodeError:
                    pass
                pos += len(part) + 1
        off = self._str_lookup.get(s)
        if off is None and s == "":
            off = 0
        if off is None:
            off = self._str_end()
            self._new_strs.append(s.encode() + b"\0")
            self._str_lookup[s] = off
            self._names[off] = s
        return off

    # --- types by id ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of type ids, counting void (id 0) and the base's types: ids are 0..len-1."""
        return self.start_id + len(self._offs) + len(self._added)

    def _check_id(self, tid: int) -> int:
        if tid >= len(self):
            raise BTFError(f"BTF type id {tid} is out of range (have {len(self) - 1} types)",
                           type_id=tid)
        return tid

    def type(self, tid: int) -> Type:
        """The record of type `tid` (id 0 is void)."""
        t = self._cache.get(tid)
        if t is not None:
            return t
        if tid == 0:
            return VOID
        if not isinstance(tid, int) or tid < 0 or tid >= len(self):
            raise BTFError(f"BTF type id {tid} is out of range (have {len(self) - 1} types)",
                           type_id=tid if isinstance(tid, int) else None)
        if tid < self.start_id:
            assert self.base is not None
            return self.base.type(tid)
        local = tid - self.start_id
        if local >= len(self._offs):
            return self._added[local - len(self._offs)]
        t = reader.decode_record(self._words, self._offs[local], self._checked_string,
                                 self._check_id, tid)
        self._cache[tid] = t
        return t

    __getitem__ = type

    @property
    def types(self) -> _Types:
        """Sequence-like access to every type by id: `btf.types[id]`, `len(btf.types)`."""
        return _Types(self)

    def kind(self, tid: int) -> Kind:
        """Kind of `tid` without decoding the whole record."""
        if tid == 0:
            return Kind.VOID
        local = tid - self.start_id
        if tid in self._cache or local < 0 or local >= len(self._offs):
            return self.type(tid).kind
        return Kind((self._words[self._offs[local] + 1] >> 24) & 0x1F)

    def ids(self) -> range:
        """This BTF's own type ids (not the base's)."""
        return range(self.start_id, len(self))

    def __iter__(self) -> Iterator[tuple[int, Type]]:
        for tid in self.ids():
            yield tid, self.type(tid)

    def validate(self) -> None:
        """Decode every own type, so that any bad string offset or type id raises BTFError now."""
        for local, i in enumerate(self._offs):
            tid = self.start_id + local
            if tid not in self._cache:
                reader.decode_record(self._words, i, self._checked_string, self._check_id, tid)

    def name_of(self, tid: int) -> str:
        return self.type(tid).name

    # --- editing ----------------------------------------------------------------------------------
    def replace(self, tid: int, t: Type) -> None:
        """Put `t` in place of type `tid` (an own type); to_bytes() encodes the new record."""
        if tid < self.start_id or tid >= len(self):
            raise BTFError(f"cannot replace type id {tid}: not a type of this BTF", type_id=tid)
        local = tid - self.start_id
        if local >= len(self._offs):
            self._added[local - len(self._offs)] = t
        else:
            self._cache[tid] = t
        self._invalidate()

    def add_type(self, t: Type) -> int:
        """Append a type; returns its new id."""
        self._added.append(t)
        self._invalidate()
        return len(self) - 1

    def set_datasec(self, tid: int, size: int | None = None,
                    offsets: dict[int, int] | None = None) -> None:
        """Set a DATASEC's size and/or its variables' offsets ({VAR type id: offset})."""
        t = self.type(tid)
        if t.kind != Kind.DATASEC:
            raise BTFError(f"type {tid} is {t.kind.name}, not DATASEC", type_id=tid)
        if size is not None:
            t.size = size
        for v in t.vars:
            if offsets and v.type in offsets:
                v.offset = offsets[v.type]
        self.replace(tid, t)

    def _invalidate(self) -> None:
        self._name_index = None
        self._tag_index = None
        self._member_cache.clear()
        self._align_cache.clear()
        self._name_cache.clear()

    def to_bytes(self, fresh: bool = False) -> bytes:
        """Encode this BTF (own types and strings; a split BTF stays split).

        Records never decoded are copied as they were; decoded (possibly edited) ones are
        re-encoded. `fresh=True` re-encodes every record (what the round-trip tests check).
        """
        def name_off(name: str, old: int) -> int:
            if old >= 0 and old < self._str_end():
                try:
                    if self.string(old) == name:
                        return old
                except BTFError:
                    pass
            return self.add_string(name)

        out: list[bytes] = []
        words = self._words
        offs = self._offs
        n = len(offs)
        for local in range(n):
            tid = self.start_id + local
            t = self._cache.get(tid)
            if t is None and fresh:
                t = self.type(tid)
            if t is None:
                end = offs[local + 1] if local + 1 < n else len(words)
                out.append(words[offs[local]:end].tobytes())
            else:
                w = reader.encode_record(t, name_off)
                out.append(struct.pack(f"<{len(w)}I", *w))
        for t in self._added:
            w = reader.encode_record(t, name_off)
            out.append(struct.pack(f"<{len(w)}I", *w))
        types = b"".join(out)
        strs = self._strs + b"".join(self._new_strs)
        if self.base is None and not strs:
            strs = b"\0"
        hdr_len = reader.HDR_LEN + len(self.header.extra)
        head = reader.HDR.pack(reader.MAGIC, reader.VERSION, self.header.flags, hdr_len,
                               0, len(types), len(types), len(strs))
        return head + self.header.extra + types + strs

    # --- lookup by name -----------------------------------------------------------------------
    def _index(self) -> dict[str, list[int]]:
        if self._name_index is None:
            by_off: dict[int, list[int]] = {}
            words = self._words
            start = self.start_id
            for local, i in enumerate(self._offs):
                tid = start + local
                if tid in self._cache:
                    continue
                off = words[i]
                if off:
                    lst = by_off.get(off)
                    if lst is None:
                        by_off[off] = [tid]
                    else:
                        lst.append(tid)
            idx: dict[str, list[int]] = {}
            for off, tids in by_off.items():
                idx.setdefault(self._checked_string(off), []).extend(tids)
            for tid, t in self._cache.items():
                if t.name:
                    idx.setdefault(t.name, []).append(tid)
            for k, t in enumerate(self._added):
                if t.name:
                    idx.setdefault(t.name, []).append(start + len(self._offs) + k)
            for lst in idx.values():
                lst.sort()
            self._name_index = idx
        return self._name_index

    def _ids_named(self, name: str) -> list[int]:
        """Own ids named `name`. Before the full index exists, search the string table for the
        name and scan the name words: a first kfunc lookup in vmlinux then costs milliseconds."""
        if self._name_index is not None or not name:
            return self._index().get(name, [])
        if self._name_offs is None:
            words = self._words
            self._name_offs = [words[i] for i in self._offs]
        strs = self._strs
        needle = name.encode() + b"\0"
        cands = []
        p = strs.find(needle)
        while p >= 0:
            cands.append(p + self.start_str)
            p = strs.find(needle, p + 1)
        ids: list[int] = []
        offs = self._name_offs
        start = self.start_id
        if len(cands) > 4:
            cset = set(cands)
            ids = [start + j for j, o in enumerate(offs) if o in cset]
            cands = []
        for c in cands:
            j = -1
            while True:
                try:
                    j = offs.index(c, j + 1)
                except ValueError:
                    break
                ids.append(start + j)
        if self._cache:
            ids = [tid for tid in ids if tid not in self._cache]
            ids += [tid for tid, t in self._cache.items() if t.name == name]
        n = start + len(self._offs)
        ids += [n + k for k, t in enumerate(self._added) if t.name == name]
        ids.sort()
        return ids

    def names(self) -> Iterator[str]:
        """Every distinct type name (own and base)."""
        if self.base is not None:
            yield from self.base.names()
        yield from self._index()

    def find_all(self, name: str, kind: int | str | None = None) -> list[int]:
        """Every type id named `name` (optionally of one kind), base types first."""
        k = None if kind is None else kind_of(kind)
        out = self.base.find_all(name, kind) if self.base is not None else []
        for tid in self._ids_named(name):
            if k is None or self.kind(tid) == k:
                out.append(tid)
        return out

    def find(self, name: str, kind: int | str | None = None) -> int:
        """The first type id named `name` (of `kind` if given); KeyError if there is none."""
        found = self.find_all(name, kind)
        if not found:
            what = f" of kind {kind_of(kind).name}" if kind is not None else ""
            raise KeyError(f"no BTF type named {name!r}{what}")
        return found[0]

    def find_type(self, spec: str) -> int:
        """A type from C-like spelling: "struct htab", "union u", "enum e", "u32", "void",
        "struct elem *" (an existing pointer type)."""
        s = " ".join(spec.split())
        if s.endswith("*"):
            inner = self.find_type(s[:-1].strip())
            for tid in self._ptr_ids():
                if self.type(tid).type == inner:
                    return tid
            raise KeyError(f"no BTF pointer type {spec!r}")
        if s == "void":
            return 0
        for prefix, kinds in (("struct ", (Kind.STRUCT,)), ("union ", (Kind.UNION,)),
                              ("enum ", (Kind.ENUM, Kind.ENUM64))):
            if s.startswith(prefix):
                name = s[len(prefix):].strip()
                for k in kinds:
                    found = self.find_all(name, k)
                    if found:
                        return found[0]
                raise KeyError(f"no BTF type {spec!r}")
        for k in (Kind.TYPEDEF, Kind.INT, Kind.FLOAT, Kind.STRUCT, Kind.UNION, Kind.ENUM,
                  Kind.ENUM64):
            found = self.find_all(s, k)
            if found:
                return found[0]
        raise KeyError(f"no BTF type {spec!r}")

    def _ptr_ids(self) -> Iterator[int]:
        if self.base is not None:
            yield from self.base._ptr_ids()
        for tid in self.ids():
            if self.kind(tid) == Kind.PTR:
                yield tid

    def _ids_of_kind(self, k: Kind) -> Iterator[int]:
        for tid in self.ids():
            if self.kind(tid) == k:
                yield tid

    def funcs(self) -> Iterator[int]:
        """Ids of this BTF's FUNC types."""
        return self._ids_of_kind(Kind.FUNC)

    def datasecs(self) -> Iterator[int]:
        """Ids of this BTF's DATASEC types."""
        return self._ids_of_kind(Kind.DATASEC)

    def decl_tags(self, tid: int, component_idx: int | None = None) -> list[tuple[int, str]]:
        """(component_idx, tag) for every DECL_TAG on `tid`; -1 = the type itself, else the
        member/parameter index (e.g. (0, "arg:arena"))."""
        if self._tag_index is None:
            idx: dict[int, list[int]] = {}
            for t_id in self._ids_of_kind(Kind.DECL_TAG):
                idx.setdefault(self.type(t_id).type, []).append(t_id)
            self._tag_index = idx
        out = self.base.decl_tags(tid, component_idx) if self.base is not None else []
        for t_id in self._tag_index.get(tid, ()):
            t = self.type(t_id)
            if component_idx is None or t.component_idx == component_idx:
                out.append((t.component_idx, t.name))
        return out

    # --- layout ---------------------------------------------------------------------------------
    def resolve(self, tid: int) -> int:
        """Skip typedefs, const, volatile, restrict and type tags."""
        for _ in range(MAX_DEPTH):
            t = self.type(tid)
            if t.kind not in MODIFIER_KINDS:
                return tid
            tid = t.type
        raise BTFError("BTF type chain is too long (a loop?)", type_id=tid)

    def resolved(self, tid: int) -> Type:
        return self.type(self.resolve(tid))

    def sizeof(self, tid: int) -> int:
        """C sizeof; BTFError for void, functions and forward declarations."""
        mult = 1
        for _ in range(MAX_DEPTH):
            tid = self.resolve(tid)
            t = self.type(tid)
            k = t.kind
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT,
                     Kind.DATASEC):
                return mult * t.size
            if k == Kind.PTR:
                return mult * PTR_SIZE
            if k == Kind.ARRAY:
                mult *= t.nelems
                tid = t.type
                continue
            if k == Kind.VAR:
                tid = t.type
                continue
            raise BTFError(f"BTF {k.name} type has no size", type_id=tid)
        raise BTFError("BTF array/var chain is too long (a loop?)", type_id=tid)

    def alignof(self, tid: int, _depth: int = 0) -> int:
        """C alignment (packed structs align to 1, as libbpf works it out)."""
        a = self._align_cache.get(tid)
        if a is None:
            a = self._align_cache[tid] = self._alignof(tid, _depth)
        return a

    def _alignof(self, tid: int, _depth: int) -> int:
        if _depth > MAX_DEPTH:
            raise BTFError("BTF type nesting is too deep (a loop?)", type_id=tid)
        tid = self.resolve(tid)
        t = self.type(tid)
        k = t.kind
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return max(1, min(t.size, PTR_SIZE))
        if k == Kind.PTR:
            return PTR_SIZE
        if k == Kind.ARRAY:
            return self.alignof(t.type, _depth + 1)
        if k == Kind.VAR:
            return self.alignof(t.type, _depth + 1)
        if k in (Kind.STRUCT, Kind.UNION):
            align = 1
            for m in self.members(tid):
                a = self.alignof(m.type_id, _depth + 1)
                if not m.bitfield_size and m.bit_offset % (8 * a):
                    return 1  # a member off its natural alignment: the struct is packed
                align = max(align, a)
            if t.size % align:
                return 1
            return align
        if k == Kind.DATASEC:
            return 1
        raise BTFError(f"BTF {k.name} type has no alignment", type_id=tid)

    def members(self, tid: int) -> list[MemberInfo]:
        """Members of a struct/union (typedefs resolved), with bit offsets and bitfield sizes."""
        tid = self.resolve(tid)
        t = self.type(tid)
        if t.kind not in (Kind.STRUCT, Kind.UNION):
            raise BTFError(f"BTF {t.kind.name} type has no members", type_id=tid)
        if t.kind_flag:
            return [MemberInfo(m.name, m.type, m.offset & 0xFFFFFF, m.offset >> 24)
                    for m in t.members]
        return [MemberInfo(m.name, m.type, m.offset, 0) for m in t.members]

    def find_member(self, tid: int, name: str, _depth: int = 0) -> MemberInfo | None:
        """Member `name`, looking through anonymous struct/union members; the bit offset is
        relative to `tid`."""
        if _depth > MAX_DEPTH:
            raise BTFError("BTF anonymous member nesting is too deep (a loop?)", type_id=tid)
        anon = []
        for m in self.members(tid):
            if m.name == name:
                return m
            if not m.name and self.resolved(m.type_id).kind in (Kind.STRUCT, Kind.UNION):
                anon.append(m)
        for m in anon:
            sub = self.find_member(m.type_id, name, _depth + 1)
            if sub is not None:
                return MemberInfo(sub.name, sub.type_id, m.bit_offset + sub.bit_offset,
                                  sub.bitfield_size)
        return None

    def field(self, tid: int, path: str) -> MemberInfo:
        """The member at a C access path such as "a.b[2].c" (bit offset from the start of tid)."""
        bit = 0
        cur = tid
        bits = 0
        name = ""
        for tok in _path_tokens(path):
            t = self.resolved(cur)
            if isinstance(tok, int):
                if t.kind == Kind.ARRAY:
                    elem = t.type
                elif t.kind == Kind.PTR:
                    raise KeyError(f"{path!r}: cannot index through a pointer")
                else:
                    raise KeyError(f"{path!r}: [{tok}] applied to a {t.kind.name}")
                bit += tok * self.sizeof(elem) * 8
                cur = elem
                bits = 0
            else:
                if t.kind not in (Kind.STRUCT, Kind.UNION):
                    raise KeyError(f"{path!r}: .{tok} applied to a {t.kind.name}")
                m = self.find_member(self.resolve(cur), tok)
                if m is None:
                    raise KeyError(f"{self.type_name(cur)} has no member {tok!r}")
                bit += m.bit_offset
                cur = m.type_id
                bits = m.bitfield_size
                name = tok
        return MemberInfo(name, cur, bit, bits)

    def offsetof(self, tid: int, path: str) -> int:
        """Byte offset of a member path ("a.b[2].c") in struct/union `tid`."""
        return self.field(tid, path).bit_offset // 8

    def is_signed(self, tid: int) -> bool:
        t = self.resolved(tid)
        if t.kind == Kind.INT:
            return bool(t.encoding & INT_SIGNED)
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return bool(t.kind_flag)
        return t.kind == Kind.FLOAT

    # --- names ----------------------------------------------------------------------------------
    def type_name(self, tid: int) -> str:
        """C-like spelling of a type: "struct htab *", "const char *", "int [4]"."""
        return self._spell(tid, 0)

    def _spell(self, tid: int, depth: int) -> str:
        s = self._name_cache.get(tid)
        if s is None:
            s = self._name_cache[tid] = self._spell1(tid, depth)
        return s

    def _spell1(self, tid: int, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise BTFError("BTF type nesting is too deep (a loop?)", type_id=tid)
        t = self.type(tid)
        k = t.kind
        if k == Kind.VOID:
            return "void"
        if k in (Kind.STRUCT, Kind.UNION):
            tag = "struct" if k == Kind.STRUCT else "union"
            return f"{tag} {t.name}" if t.name else f"{tag} {{...}}"
        if k in (Kind.ENUM, Kind.ENUM64):
            return f"enum {t.name}" if t.name else "enum {...}"
        if k == Kind.FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if k == Kind.PTR:
            target = self.type(t.type)
            if target.kind == Kind.FUNC_PROTO:
                return self._proto(target, "(*)", depth)
            inner = self._spell(t.type, depth + 1)
            return inner + ("*" if inner.endswith("*") else " *")
        if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            q = k.name.lower()
            inner = self._spell(t.type, depth + 1)
            return f"{inner} {q}" if inner.endswith("*") else f"{q} {inner}"
        if k == Kind.TYPE_TAG:
            return self._spell(t.type, depth + 1)
        if k == Kind.ARRAY:
            inner = self._spell(t.type, depth + 1)
            if "[" in inner:
                base, _, dims = inner.partition("[")
                return f"{base}[{t.nelems}][{dims}"
            return f"{inner}[{t.nelems}]"
        if k == Kind.FUNC_PROTO:
            return self._proto(t, "", depth)
        return t.name or f"<anon {k.name}>"

    def _proto(self, t: Type, mid: str, depth: int) -> str:
        ret = self._spell(t.type, depth + 1)
        args = ", ".join(
            "..." if p.type == 0 else self._spell(p.type, depth + 1) for p in t.params
        ) or "void"
        return f"{ret} {mid}({args})" if mid else f"{ret} ({args})"

    def __repr__(self) -> str:
        split = f" split on {len(self.base) - 1} base types" if self.base is not None else ""
        return f"<BTF {len(self) - self.start_id} types{split}>"

    def describe(self, tid: int) -> dict[str, Any]:
        """A small dict summary of a type (for the CLI and debugging)."""
        t = self.type(tid)
        d: dict[str, Any] = {"id": tid, "kind": t.kind.name, "name": t.name}
        try:
            d["size"] = self.sizeof(tid)
        except BTFError:
            pass
        return d


class _Types:
    __slots__ = ("_btf",)

    def __init__(self, btf: BTF) -> None:
        self._btf = btf

    def __getitem__(self, tid: int) -> Type:
        return self._btf.type(tid)

    def __len__(self) -> int:
        return len(self._btf)

    def __iter__(self) -> Iterator[Type]:
        for tid in range(len(self._btf)):
            yield self._btf.type(tid)


def _path_tokens(path: str) -> list[str | int]:
    toks: list[str | int] = []
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == ".":
            i += 1
            continue
        if c == "[":
            j = path.find("]", i)
            if j < 0:
                raise KeyError(f"bad member path {path!r}: missing ']'")
            try:
                toks.append(int(path[i + 1:j], 0))
            except ValueError:
                raise KeyError(f"bad member path {path!r}: index {path[i + 1:j]!r}") from None
            i = j + 1
            continue
        j = i
        while j < n and path[j] not in ".[":
            j += 1
        toks.append(path[i:j].strip())
        i = j
    if not toks:
        raise KeyError(f"empty member path {path!r}")
    return toks
