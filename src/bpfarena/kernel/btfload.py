"""Raw BTF as the kernel takes it: in-place fixups of an object's BTF before BPF_BTF_LOAD.

The loader edits the exact bytes clang wrote (type ids must not move: func_info, line_info, map
key/value ids and CO-RE records all refer to them), so this works on the raw blob rather than on a
re-serialised model. The fixups are the ones libbpf makes, found by loading into 6.18:
  * DATASEC sizes come from ELF section sizes and VAR offsets from symbol values;
  * `.ksyms` externs: the kernel refuses extern linkage (FUNC and VAR) and non-VAR DATASEC entries,
    so FUNC entries point at one added `int` VAR, FUNCs become global, VARs global-allocated, and
    the DATASEC is laid out with real sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BTFError, ObjectError

MAGIC = 0xEB9F
K_INT, K_PTR, K_ARRAY, K_STRUCT, K_UNION, K_ENUM, K_FWD, K_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
K_VOLATILE, K_CONST, K_RESTRICT, K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC = 9, 10, 11, 12, 13, 14, 15
K_FLOAT, K_DECL_TAG, K_TYPE_TAG, K_ENUM64 = 16, 17, 18, 19
VAR_GLOBAL_ALLOCATED = 1
FUNC_GLOBAL = 1

_EXTRA_FIXED = {K_INT: 4, K_ARRAY: 12, K_VAR: 4, K_DECL_TAG: 4}
_EXTRA_PER = {K_STRUCT: 12, K_UNION: 12, K_ENUM: 8, K_FUNC_PROTO: 8, K_DATASEC: 12, K_ENUM64: 12}
_SIZED = {K_INT, K_STRUCT, K_UNION, K_ENUM, K_DATASEC, K_FLOAT, K_ENUM64}


@dataclass
class RawType:
    off: int  # offset of the 12-byte header inside the type section
    kind: int
    vlen: int
    name_off: int


class RawBTF:
    """A BTF blob split into header, types (patchable in place) and strings."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("BTF blob is truncated", offset=0)
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BTFError(f"bad BTF magic 0x{magic:x}", offset=0)
        t_off, t_len, s_off, s_len = struct.unpack_from("<IIII", data, 8)
        self.hdr = bytearray(data[:hdr_len])
        base = hdr_len
        if base + max(t_off + t_len, s_off + s_len) > len(data):
            raise BTFError("BTF sections run past the blob", offset=hdr_len)
        self.types = bytearray(data[base + t_off: base + t_off + t_len])
        self.strings = bytearray(data[base + s_off: base + s_off + s_len])
        self.index: list[RawType | None] = [None]  # id 0 is void
        self._scan(0)

    def _scan(self, pos: int) -> None:
        t = self.types
        while pos < len(t):
            if pos + 12 > len(t):
                raise BTFError("truncated BTF type", offset=pos, type_id=len(self.index))
            name_off, info = struct.unpack_from("<II", t, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self.index.append(RawType(pos, kind, vlen, name_off))
            pos += 12 + _EXTRA_FIXED.get(kind, 0) + _EXTRA_PER.get(kind, 0) * vlen
        if pos != len(t):
            raise BTFError("BTF type section overruns", offset=pos)

    # --- reading ---------------------------------------------------------------------------------
    def string(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        return self.strings[off:end if end >= 0 else len(self.strings)].decode(errors="replace")

    def name(self, tid: int) -> str:
        return self.string(self.index[tid].name_off)

    def word(self, tid: int, i: int) -> int:
        """The i-th u32 of type `tid` (0 = name_off, 1 = info, 2 = size/type, 3.. = extra)."""
        return struct.unpack_from("<I", self.types, self.index[tid].off + 4 * i)[0]

    def set_word(self, tid: int, i: int, v: int) -> None:
        struct.pack_into("<I", self.types, self.index[tid].off + 4 * i, v & 0xFFFFFFFF)

    def members(self, tid: int) -> list[tuple[int, int, int]]:
        """DATASEC entries as (type, offset, size)."""
        rt = self.index[tid]
        return [struct.unpack_from("<III", self.types, rt.off + 12 + 12 * i)
                for i in range(rt.vlen)]

    def set_member(self, tid: int, i: int, type_id: int, off: int, size: int,
                   symbol: str | None = None) -> None:
        """Rewrite DATASEC entry i; every field is a u32 in BTF, so a value beyond one (a bogus
        symbol value, say) is the object's fault, reported as such."""
        for what, v in (("type id", type_id), ("offset", off), ("size", size)):
            if not 0 <= v <= 0xFFFFFFFF:
                raise ObjectError(f"BTF DATASEC entry {i}: {what} {v:#x} does not fit in 32 bits",
                                  section=self.name(tid), symbol=symbol)
        struct.pack_into("<III", self.types, self.index[tid].off + 12 + 12 * i, type_id, off, size)

    def var_name(self, vt: int) -> str:
        """The name of VAR `vt`, or "" when vt is not a VAR (or not a type id at all)."""
        if not 0 < vt < len(self.index):
            raise BTFError(f"DATASEC entry refers to type id {vt} of {len(self.index) - 1}",
                           type_id=vt)
        rt = self.index[vt]
        return self.name(vt) if rt is not None and rt.kind == K_VAR else ""

    def resolve_size(self, tid: int, depth: int = 0) -> int:
        """Byte size of a type (through typedefs, qualifiers, arrays)."""
        if tid == 0 or depth > 64:
            return 0
        rt = self.index[tid]
        if rt.kind in _SIZED:
            return self.word(tid, 2)
        if rt.kind == K_PTR:
            return 8
        if rt.kind == K_ARRAY:
            elem, _idx, n = struct.unpack_from("<III", self.types, rt.off + 12)
            return n * self.resolve_size(elem, depth + 1)
        if rt.kind in (K_TYPEDEF, K_VOLATILE, K_CONST, K_RESTRICT, K_TYPE_TAG, K_VAR):
            return self.resolve_size(self.word(tid, 2), depth + 1)
        return 0

    def find(self, kind: int, name: str) -> int | None:
        for tid in range(1, len(self.index)):
            rt = self.index[tid]
            if rt.kind == kind and self.string(rt.name_off) == name:
                return tid
        return None

    # --- editing ---------------------------------------------------------------------------------
    def add_string(self, s: str) -> int:
        off = len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def add_type(self, raw: bytes) -> int:
        pos = len(self.types)
        self.types += raw
        self._scan(pos)
        return len(self.index) - 1

    def to_bytes(self) -> bytes:
        hdr = bytearray(self.hdr)
        struct.pack_into("<IIII", hdr, 8, 0, len(self.types), len(self.types), len(self.strings))
        return bytes(hdr + self.types + self.strings)


def fixup(raw: RawBTF, sections: dict[str, tuple[int, dict[str, int]]]) -> None:
    """Make object BTF loadable: `sections` maps a DATASEC name to (size, {var name: offset})."""
    int_id = None
    dummy_var = None
    for tid in range(1, len(raw.index)):
        rt = raw.index[tid]
        if rt.kind == K_FUNC and (rt.vlen > FUNC_GLOBAL):
            raw.set_word(tid, 1, (K_FUNC << 24) | FUNC_GLOBAL)
            _name_params(raw, raw.word(tid, 2))
        elif rt.kind == K_VAR and raw.word(tid, 3) > VAR_GLOBAL_ALLOCATED:
            raw.set_word(tid, 3, VAR_GLOBAL_ALLOCATED)
    for tid in range(1, len(raw.index)):
        rt = raw.index[tid]
        if rt.kind != K_DATASEC:
            continue
        sec = raw.name(tid)
        ents = raw.members(tid)
        if sec == ".ksyms":
            off = 0
            for i, (vt, _o, _s) in enumerate(ents):
                vname = raw.var_name(vt)
                if raw.index[vt].kind == K_FUNC:
                    if dummy_var is None:
                        int_id = int_id or _int_type(raw)
                        dummy_var = raw.add_type(struct.pack(
                            "<IIII", raw.add_string("dummy_ksym"), K_VAR << 24, int_id,
                            VAR_GLOBAL_ALLOCATED))
                    vt = dummy_var
                size = max(raw.resolve_size(vt), 1)
                off = (off + min(size, 8) - 1) // min(size, 8) * min(size, 8)
                raw.set_member(tid, i, vt, off, size, vname or raw.name(vt))
                off += size
            raw.set_word(tid, 2, off)
            continue
        size, offsets = sections.get(sec, (None, {}))
        end = 0
        for i, (vt, o, s) in enumerate(ents):
            vname = raw.var_name(vt)
            o = offsets.get(vname, o)
            s = s or raw.resolve_size(vt)
            if size is not None and o + s > size:
                raise ObjectError(f"variable [{o:#x}, +{s:#x}) lies outside the section "
                                  f"({size} bytes)", section=sec, symbol=vname or None)
            raw.set_member(tid, i, vt, o, s, vname or None)
            end = max(end, o + s)
        total = size if size is not None else max(end, raw.word(tid, 2))
        if total > 0xFFFFFFFF:
            raise ObjectError(f"section size {total:#x} does not fit in 32 bits", section=sec)
        raw.set_word(tid, 2, total)


def _name_params(raw: RawBTF, proto: int) -> None:
    """A global FUNC needs named parameters ("Invalid arg#N" otherwise); clang leaves an extern's
    parameters unnamed."""
    rt = raw.index[proto] if 0 < proto < len(raw.index) else None
    if rt is None or rt.kind != K_FUNC_PROTO:
        return
    for i in range(rt.vlen):
        pos = rt.off + 12 + 8 * i
        name_off, ptype = struct.unpack_from("<II", raw.types, pos)
        if not name_off and ptype:
            struct.pack_into("<I", raw.types, pos, raw.add_string(f"arg{i}"))


def _int_type(raw: RawBTF) -> int:
    for tid in range(1, len(raw.index)):
        rt = raw.index[tid]
        if rt.kind == K_INT and raw.word(tid, 2) == 4:
            return tid
    # no 4-byte int in the object: add one (signed, 32 bits)
    return raw.add_type(struct.pack("<IIII", raw.add_string("int"), K_INT << 24, 4,
                                    (1 << 24) | 32))
