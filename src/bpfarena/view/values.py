"""BTF-typed values <-> bytes: how globals and view members read and assign.

Reading: scalars are ints (signed where BTF says so), _Bool is bool, enums are ints, floats are
floats, pointers are ints, arrays are lists, char arrays are str when they hold NUL-terminated text
(bytes otherwise), structs/unions are dicts (anonymous members' fields appear in the parent).
Writing takes the same forms; a dict leaves missing members zero, a short list or string leaves the
rest zero. With no BTF (or type id 0) bytes go in and out; ints are allowed for sizes 1/2/4/8.
"""

from __future__ import annotations

import struct
from typing import Any

from ..btf import BTF
from ..btf.types import INT_BOOL, INT_CHAR, INT_SIGNED, Kind, MemberInfo, Type
from ..errors import BTFError

MAX_DEPTH = 32
MAX_ELEMS = 1 << 24
_FLOAT_FMT = {2: "<e", 4: "<f", 8: "<d"}


def is_char_type(btf: BTF, tid: int) -> bool:
    """Plain `char` (or an INT marked as char): arrays of it read as text."""
    t = btf.resolved(tid)
    return t.kind == Kind.INT and t.size == 1 and (bool(t.encoding & INT_CHAR) or t.name == "char")


def _int_from(t: Type, raw: bytes) -> int | bool:
    v = int.from_bytes(raw[:t.size], "little")
    if t.bits and (t.bit_offset or t.bits < t.size * 8):
        v = (v >> t.bit_offset) & ((1 << t.bits) - 1)
        nbits = t.bits
    else:
        nbits = t.size * 8
    if t.encoding & INT_BOOL:
        return bool(v)
    if t.encoding & INT_SIGNED and nbits and v >> (nbits - 1):
        v -= 1 << nbits
    return v


def _text(raw: bytes) -> str | bytes:
    nul = raw.find(b"\0")
    body, rest = (raw, b"") if nul < 0 else (raw[:nul], raw[nul:])
    if rest.strip(b"\0"):
        return raw
    try:
        s = body.decode()
    except UnicodeDecodeError:
        return raw
    if all(c.isprintable() or c in "\t\n\r" for c in s):
        return s
    return raw


def flat_members(btf: BTF, tid: int, base_bit: int = 0, depth: int = 0) -> list[MemberInfo]:
    """Named members, with anonymous struct/union members' fields pulled up (offsets absolute)."""
    if depth > MAX_DEPTH:
        raise BTFError("anonymous member nesting is too deep (a loop?)", type_id=tid)
    out = []
    for m in btf.members(tid):
        bit = base_bit + m.bit_offset
        if not m.name and not m.bitfield_size and \
                btf.resolved(m.type_id).kind in (Kind.STRUCT, Kind.UNION):
            out.extend(flat_members(btf, m.type_id, bit, depth + 1))
        elif m.name:
            out.append(MemberInfo(m.name, m.type_id, bit, m.bitfield_size))
    return out


def read_bitfield(btf: BTF, m: MemberInfo, data: bytes, base_bit: int = 0) -> int | bool:
    bit = base_bit + m.bit_offset
    start = bit // 8
    shift = bit % 8
    n = (shift + m.bitfield_size + 7) // 8
    raw = data[start:start + n]
    if len(raw) < n:
        raise BTFError(f"bitfield {m.name!r} lies outside the value", type_id=m.type_id)
    v = (int.from_bytes(raw, "little") >> shift) & ((1 << m.bitfield_size) - 1)
    t = btf.resolved(m.type_id)
    if t.kind == Kind.INT and t.encoding & INT_BOOL:
        return bool(v)
    if btf.is_signed(m.type_id) and v >> (m.bitfield_size - 1):
        v -= 1 << m.bitfield_size
    return v


def write_bitfield(btf: BTF, m: MemberInfo, buf: bytearray, value: Any, base_bit: int = 0) -> None:
    v = _as_int(value, m.name)
    bits = m.bitfield_size
    lo = -(1 << (bits - 1)) if btf.is_signed(m.type_id) else 0
    if not lo <= v < 1 << bits:
        raise ValueError(f"{v} does not fit in the {bits}-bit field {m.name!r}")
    bit = base_bit + m.bit_offset
    start = bit // 8
    shift = bit % 8
    n = (shift + bits + 7) // 8
    if start + n > len(buf):
        raise BTFError(f"bitfield {m.name!r} lies outside the value", type_id=m.type_id)
    cur = int.from_bytes(buf[start:start + n], "little")
    mask = ((1 << bits) - 1) << shift
    cur = (cur & ~mask) | ((v << shift) & mask)
    buf[start:start + n] = cur.to_bytes(n, "little")


def decode_value(btf: BTF | None, type_id: int, data: bytes | bytearray | memoryview) -> Any:
    """Python value of `data` typed by BTF type `type_id` (see the module docstring)."""
    data = bytes(data)
    if btf is None or not type_id:
        return data
    return _dec(btf, type_id, data, 0)


def _dec(btf: BTF, tid: int, data: bytes, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise BTFError("type nesting is too deep to decode (a loop?)", type_id=tid)
    rid = btf.resolve(tid)
    t = btf.type(rid)
    k = t.kind
    if k in (Kind.VOID, Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO, Kind.DECL_TAG):
        return data
    if k == Kind.VAR:
        return _dec(btf, t.type, data, depth + 1)
    size = btf.sizeof(rid)
    if len(data) < size:
        raise BTFError(f"{len(data)} bytes is too short for {btf.type_name(tid)} ({size} bytes)",
                       type_id=tid)
    if k == Kind.INT:
        return _int_from(t, data)
    if k in (Kind.ENUM, Kind.ENUM64):
        v = int.from_bytes(data[:t.size], "little")
        if t.kind_flag and t.size and v >> (t.size * 8 - 1):
            v -= 1 << (t.size * 8)
        return v
    if k == Kind.PTR:
        return int.from_bytes(data[:8], "little")
    if k == Kind.FLOAT:
        fmt = _FLOAT_FMT.get(t.size)
        return struct.unpack(fmt, data[:t.size])[0] if fmt else data[:t.size]
    if k == Kind.ARRAY:
        if is_char_type(btf, t.type):
            return _text(data[:size])
        esz = btf.sizeof(t.type)
        if t.nelems > MAX_ELEMS or (esz == 0 and t.nelems > 4096):
            raise BTFError(f"array of {t.nelems} elements is too large to decode", type_id=rid)
        return [_dec(btf, t.type, data[i * esz:(i + 1) * esz], depth + 1)
                for i in range(t.nelems)]
    if k in (Kind.STRUCT, Kind.UNION):
        out: dict[str, Any] = {}
        for m in flat_members(btf, rid):
            if m.bitfield_size:
                out[m.name] = read_bitfield(btf, m, data)
            else:
                off = m.bit_offset // 8
                msz = _size_or_zero(btf, m.type_id)
                out[m.name] = _dec(btf, m.type_id, data[off:off + msz], depth + 1)
        return out
    if k == Kind.DATASEC:
        out2: dict[str, Any] = {}
        for v in t.vars:
            out2[btf.name_of(v.type)] = _dec(btf, v.type, data[v.offset:v.offset + v.size],
                                             depth + 1)
        return out2
    return data  # pragma: no cover - every kind is handled above


def _size_or_zero(btf: BTF, tid: int) -> int:
    try:
        return btf.sizeof(tid)
    except BTFError:
        return 0


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    addr = getattr(value, "address", None)
    if isinstance(addr, int):
        return addr
    if hasattr(value, "__index__"):
        return value.__index__()
    raise TypeError(f"{what}: expected an int, got {type(value).__name__}")


def encode_value(btf: BTF | None, type_id: int, value: Any, size: int) -> bytes:
    """Bytes (exactly `size` long) for `value` typed by BTF type `type_id`."""
    buf = bytearray(size)
    if btf is None or not type_id:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) > size:
                raise ValueError(f"{len(raw)} bytes do not fit in {size}")
            buf[:len(raw)] = raw
            return bytes(buf)
        if isinstance(value, int) and size in (1, 2, 4, 8):
            return _int_bytes(value, size, None, "value")
        raise TypeError(f"untyped value of {size} bytes takes bytes (or an int for sizes 1/2/4/8),"
                        f" not {type(value).__name__}")
    _enc(btf, type_id, value, buf, 0, size, 0)
    return bytes(buf)


def _int_bytes(v: int, size: int, signed: bool | None, what: str) -> bytes:
    bits = size * 8
    if not -(1 << (bits - 1)) <= v < 1 << bits:
        raise ValueError(f"{what}: {v} does not fit in {size} bytes")
    if signed is False and v < 0:
        raise ValueError(f"{what}: {v} is negative but the type is unsigned")
    return (v & ((1 << bits) - 1)).to_bytes(size, "little")


def _enc(btf: BTF, tid: int, value: Any, buf: bytearray, off: int, size: int,
         depth: int) -> None:
    """Encode `value` into buf[off:off+size]."""
    if depth > MAX_DEPTH:
        raise BTFError("type nesting is too deep to encode (a loop?)", type_id=tid)
    rid = btf.resolve(tid)
    t = btf.type(rid)
    k = t.kind
    what = btf.type_name(tid)
    if k == Kind.VAR:
        return _enc(btf, t.type, value, buf, off, size, depth + 1)
    if isinstance(value, (bytes, bytearray, memoryview)) and not (
            k == Kind.ARRAY and is_char_type(btf, t.type)):
        raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{what}: {len(raw)} bytes do not fit in {size}")
        buf[off:off + len(raw)] = raw
        return
    if k in (Kind.VOID, Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO, Kind.DECL_TAG):
        raise TypeError(f"{what}: takes bytes, not {type(value).__name__}")
    tsize = btf.sizeof(rid)
    if tsize > size:
        raise ValueError(f"{what} is {tsize} bytes but only {size} are available")
    if k == Kind.INT:
        v = _as_int(value, what)
        if t.bits and (t.bit_offset or t.bits < t.size * 8):
            lo = -(1 << (t.bits - 1)) if t.encoding & INT_SIGNED else 0
            if not lo <= v < 1 << t.bits:
                raise ValueError(f"{what}: {v} does not fit in {t.bits} bits")
            v = (v & ((1 << t.bits) - 1)) << t.bit_offset
        buf[off:off + t.size] = _int_bytes(v, t.size, None, what)
    elif k in (Kind.ENUM, Kind.ENUM64):
        if isinstance(value, str):
            for e in t.values:
                if e.name == value:
                    value = e.value
                    break
            else:
                raise ValueError(f"{what} has no enumerator {value!r}")
        buf[off:off + t.size] = _int_bytes(_as_int(value, what), t.size, None, what)
    elif k == Kind.PTR:
        buf[off:off + 8] = _int_bytes(_as_int(value, what), 8, None, what)
    elif k == Kind.FLOAT:
        fmt = _FLOAT_FMT.get(t.size)
        if fmt is None:
            raise TypeError(f"{what}: a {t.size}-byte float takes bytes")
        if not isinstance(value, (int, float)):
            raise TypeError(f"{what}: expected a float, got {type(value).__name__}")
        buf[off:off + t.size] = struct.pack(fmt, value)
    elif k == Kind.ARRAY:
        _enc_array(btf, t, value, buf, off, tsize, depth, what)
    elif k in (Kind.STRUCT, Kind.UNION):
        if not isinstance(value, dict):
            raise TypeError(f"{what}: expected a dict, got {type(value).__name__}")
        members = {m.name: m for m in flat_members(btf, rid)}
        for name, v in value.items():
            m = members.get(name)
            if m is None:
                raise KeyError(f"{what} has no member {name!r}")
            if m.bitfield_size:
                sub = bytearray(buf[off:off + tsize])
                write_bitfield(btf, m, sub, v)
                buf[off:off + tsize] = sub
            else:
                moff = m.bit_offset // 8
                _enc(btf, m.type_id, v, buf, off + moff, tsize - moff, depth + 1)
    elif k == Kind.DATASEC:
        if not isinstance(value, dict):
            raise TypeError(f"{what}: expected a dict, got {type(value).__name__}")
        by_name = {btf.name_of(v.type): v for v in t.vars}
        for name, v in value.items():
            si = by_name.get(name)
            if si is None:
                raise KeyError(f"section {t.name!r} has no variable {name!r}")
            _enc(btf, si.type, v, buf, off + si.offset, si.size, depth + 1)


def _enc_array(btf: BTF, t: Type, value: Any, buf: bytearray, off: int, tsize: int, depth: int,
               what: str) -> None:
    if is_char_type(btf, t.type) and isinstance(value, (str, bytes, bytearray, memoryview)):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if len(raw) > tsize:
            raise ValueError(f"{what}: {len(raw)} bytes do not fit in {tsize}")
        buf[off:off + tsize] = raw + bytes(tsize - len(raw))
        return
    if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what}: expected a list, got {type(value).__name__}")
    items = list(value)
    if len(items) > t.nelems:
        raise ValueError(f"{what}: {len(items)} elements do not fit in {t.nelems}")
    esz = btf.sizeof(t.type)
    buf[off:off + tsize] = bytes(tsize)
    for i, v in enumerate(items):
        _enc(btf, t.type, v, buf, off + i * esz, esz, depth + 1)
