"""Raw BTF encoding: the header, the one-pass record index, and per-record decode/encode.

Every type record is a sequence of little-endian u32 words, so the type section is read once into an
`array('I')`; decoding a record is then a handful of list lookups. Nothing here knows about names
beyond string offsets: `BTF` (btf.py) owns strings, ids and lookups.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from ..errors import BTFError
from .types import MAX_KIND, EnumValue, Kind, Member, Param, Type, VarSecinfo

MAGIC = 0xEB9F
VERSION = 1
HDR = struct.Struct("<HBBIIIII")
HDR_LEN = HDR.size  # 24
INFO_MASK = 0x9F00FFFF  # vlen 0..15, kind 24..28, kind_flag 31

# record size beyond the 12-byte btf_type: fixed words, words per vlen entry (index = kind)
_FIXED = [0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
_PER_VLEN = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3]


@dataclass
class Header:
    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    extra: bytes = b""  # header bytes past the 24 we know (kept for re-encoding)


def read_header(data: bytes) -> Header:
    if len(data) < HDR_LEN:
        raise BTFError(f"BTF is {len(data)} bytes, shorter than its {HDR_LEN}-byte header", offset=0)
    magic, version, flags, hdr_len, t_off, t_len, s_off, s_len = HDR.unpack_from(data, 0)
    if magic == 0x9FEB:
        raise BTFError("big-endian BTF is not supported", offset=0)
    if magic != MAGIC:
        raise BTFError(f"bad BTF magic 0x{magic:04x} (want 0x{MAGIC:04x})", offset=0)
    if version != VERSION:
        raise BTFError(f"unsupported BTF version {version}", offset=2)
    if hdr_len < HDR_LEN or hdr_len > len(data):
        raise BTFError(f"bad BTF header length {hdr_len} (data is {len(data)} bytes)", offset=4)
    extra = bytes(data[HDR_LEN:hdr_len])
    body = len(data) - hdr_len
    if t_off % 4:
        raise BTFError(f"BTF type section offset {t_off} is not 4-byte aligned", offset=8)
    if t_len % 4:
        raise BTFError(f"BTF type section length {t_len} is not a multiple of 4", offset=12)
    if t_off + t_len > body:
        raise BTFError(f"BTF type section [{t_off}, +{t_len}) overruns the data ({body} bytes)",
                       offset=8)
    if s_off + s_len > body:
        raise BTFError(f"BTF string section [{s_off}, +{s_len}) overruns the data ({body} bytes)",
                       offset=16)
    if t_len and s_len and t_off < s_off + s_len and s_off < t_off + t_len:
        raise BTFError("BTF type and string sections overlap", offset=8)
    return Header(magic, version, flags, hdr_len, t_off, t_len, s_off, s_len, extra)


def load_words(data: bytes, start: int, length: int) -> array:
    words = array("I")
    if words.itemsize != 4:  # pragma: no cover - exotic platforms
        words = array("L")
    words.frombytes(bytes(data[start:start + length]))
    if sys.byteorder == "big":  # pragma: no cover
        words.byteswap()
    return words


def index_records(words: array, section_offset: int) -> list[int]:
    """Word index of every record, in id order; checks kinds, info bits and record bounds."""
    offs: list[int] = []
    append = offs.append
    n = len(words)
    i = 0
    fixed = _FIXED
    per = _PER_VLEN
    while i < n:
        if i + 3 > n:
            raise BTFError("truncated BTF type record", offset=section_offset + 4 * i,
                           type_id=len(offs) + 1)
        info = words[i + 1]
        kind = (info >> 24) & 0x1F
        if info & ~INFO_MASK & 0xFFFFFFFF:
            raise BTFError(f"BTF type info 0x{info:08x} has reserved bits set",
                           offset=section_offset + 4 * i + 4, type_id=len(offs) + 1)
        if kind == 0 or kind > MAX_KIND:
            raise BTFError(f"unknown BTF kind {kind}", offset=section_offset + 4 * i + 4,
                           type_id=len(offs) + 1)
        append(i)
        i += 3 + fixed[kind] + (info & 0xFFFF) * per[kind]
    if i != n:
        raise BTFError(f"BTF type record {len(offs)} overruns the type section (vlen too large)",
                       offset=section_offset + 4 * offs[-1] if offs else section_offset,
                       type_id=len(offs))
    return offs


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def decode_record(words: array, i: int, name, check_id, type_id: int) -> Type:
    """Decode the record at word index `i`. `name(off)` gives a string, `check_id(id)` checks ids."""
    name_off = words[i]
    info = words[i + 1]
    sot = words[i + 2]
    kind = Kind((info >> 24) & 0x1F)
    vlen = info & 0xFFFF
    kflag = info >> 31
    t = Type(kind, name=name(name_off), kind_flag=kflag, name_off=name_off)
    j = i + 3
    if kind == Kind.INT:
        t.size = sot
        d = words[j]
        t.encoding = (d >> 24) & 0x0F
        t.bit_offset = (d >> 16) & 0xFF
        t.bits = d & 0xFF
        if d & 0xF0000000 or d & 0x0000FF00:
            raise BTFError(f"INT {t.name!r} has reserved bits set (0x{d:08x})", type_id=type_id)
        if t.bits + t.bit_offset > 128 or t.size > 16:
            raise BTFError(f"INT {t.name!r} is wider than 128 bits", type_id=type_id)
    elif kind == Kind.ARRAY:
        t.type = check_id(words[j])
        t.index_type = check_id(words[j + 1])
        t.nelems = words[j + 2]
    elif kind in (Kind.STRUCT, Kind.UNION):
        t.size = sot
        t.members = [Member(name(words[k]), check_id(words[k + 1]), words[k + 2], words[k])
                     for k in range(j, j + 3 * vlen, 3)]
    elif kind == Kind.ENUM:
        t.size = sot
        if kflag:
            t.values = [EnumValue(name(words[k]), _s32(words[k + 1]), words[k])
                        for k in range(j, j + 2 * vlen, 2)]
        else:
            t.values = [EnumValue(name(words[k]), words[k + 1], words[k])
                        for k in range(j, j + 2 * vlen, 2)]
    elif kind == Kind.ENUM64:
        t.size = sot
        vals = []
        for k in range(j, j + 3 * vlen, 3):
            v = words[k + 1] | (words[k + 2] << 32)
            if kflag and v & (1 << 63):
                v -= 1 << 64
            vals.append(EnumValue(name(words[k]), v, words[k]))
        t.values = vals
    elif kind == Kind.FUNC_PROTO:
        t.type = check_id(sot)
        t.params = [Param(name(words[k]), check_id(words[k + 1]), words[k])
                    for k in range(j, j + 2 * vlen, 2)]
    elif kind == Kind.FUNC:
        t.type = check_id(sot)
        t.linkage = vlen
    elif kind == Kind.VAR:
        t.type = check_id(sot)
        t.linkage = words[j]
    elif kind == Kind.DATASEC:
        t.size = sot
        t.vars = [VarSecinfo(check_id(words[k]), words[k + 1], words[k + 2])
                  for k in range(j, j + 3 * vlen, 3)]
    elif kind == Kind.DECL_TAG:
        t.type = check_id(sot)
        ci = words[j]
        t.component_idx = -1 if ci == 0xFFFFFFFF else ci
    elif kind == Kind.FLOAT:
        t.size = sot
    elif kind == Kind.FWD:
        pass
    else:  # PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
        t.type = check_id(sot)
    if kind in (Kind.FWD, Kind.PTR, Kind.ARRAY, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST,
                Kind.RESTRICT, Kind.FUNC, Kind.VAR, Kind.FLOAT, Kind.DECL_TAG,
                Kind.TYPE_TAG) and vlen and kind != Kind.FUNC:
        raise BTFError(f"BTF {kind.name} has vlen {vlen}", type_id=type_id)
    if kind == Kind.FWD and sot:
        raise BTFError("BTF FWD has a non-zero size/type word", type_id=type_id)
    if kind == Kind.ARRAY and sot:
        raise BTFError("BTF ARRAY has a non-zero size/type word", type_id=type_id)
    return t


def _u32(v: int, what: str) -> int:
    if not 0 <= v <= 0xFFFFFFFF:
        raise BTFError(f"{what} {v} does not fit in 32 bits")
    return v


def encode_record(t: Type, name_off) -> list[int]:
    """The u32 words of one record; `name_off(str, old_off)` gives the string offset to store."""
    kind = Kind(t.kind)
    vlen = t.vlen
    if vlen > 0xFFFF:
        raise BTFError(f"BTF {kind.name} {t.name!r} has {vlen} entries (max 65535)")
    info = (1 << 31 if t.kind_flag else 0) | (int(kind) << 24) | vlen
    if kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT,
                Kind.DATASEC):
        sot = t.size
    elif kind in (Kind.FWD, Kind.ARRAY):
        sot = 0
    else:
        sot = t.type
    w = [name_off(t.name, t.name_off), info, _u32(sot, "size/type")]
    if kind == Kind.INT:
        w.append(((t.encoding & 0xF) << 24) | ((t.bit_offset & 0xFF) << 16) | (t.bits & 0xFF))
    elif kind == Kind.ARRAY:
        w += [_u32(t.type, "type"), _u32(t.index_type, "type"), _u32(t.nelems, "nelems")]
    elif kind in (Kind.STRUCT, Kind.UNION):
        for m in t.members:
            w += [name_off(m.name, m.name_off), _u32(m.type, "type"), _u32(m.offset, "offset")]
    elif kind == Kind.ENUM:
        for e in t.values:
            w += [name_off(e.name, e.name_off), e.value & 0xFFFFFFFF]
    elif kind == Kind.ENUM64:
        for e in t.values:
            v = e.value & 0xFFFFFFFFFFFFFFFF
            w += [name_off(e.name, e.name_off), v & 0xFFFFFFFF, v >> 32]
    elif kind == Kind.FUNC_PROTO:
        for p in t.params:
            w += [name_off(p.name, p.name_off), _u32(p.type, "type")]
    elif kind == Kind.VAR:
        w.append(_u32(t.linkage, "linkage"))
    elif kind == Kind.DATASEC:
        for v in t.vars:
            w += [_u32(v.type, "type"), _u32(v.offset, "offset"), _u32(v.size, "size")]
    elif kind == Kind.DECL_TAG:
        w.append(0xFFFFFFFF if t.component_idx < 0 else _u32(t.component_idx, "component_idx"))
    return w
