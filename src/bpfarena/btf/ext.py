""".BTF.ext: func_info, line_info and CO-RE relocation records, grouped by program section.

Offsets are kept as stored in the object (`insn_off`, bytes from the section start); `insn` is
the 8-byte instruction index that the kernel and ObjectSpec use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import BTFError
from .btf import BTF

MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, func off/len, line off/len
_CORE = struct.Struct("<II")

# enum bpf_core_relo_kind
FIELD_BYTE_OFFSET = 0
FIELD_BYTE_SIZE = 1
FIELD_EXISTS = 2
FIELD_SIGNED = 3
FIELD_LSHIFT_U64 = 4
FIELD_RSHIFT_U64 = 5
TYPE_ID_LOCAL = 6
TYPE_ID_TARGET = 7
TYPE_EXISTS = 8
TYPE_SIZE = 9
ENUMVAL_EXISTS = 10
ENUMVAL_VALUE = 11
TYPE_MATCHES = 12


@dataclass(frozen=True)
class FuncInfoRecord:
    insn_off: int
    type_id: int

    @property
    def insn(self) -> int:
        return self.insn_off // 8


@dataclass(frozen=True)
class LineInfoRecord:
    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int
    file_name: str
    line: str

    @property
    def insn(self) -> int:
        return self.insn_off // 8

    @property
    def line_num(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


@dataclass(frozen=True)
class CoreReloRecord:
    insn_off: int
    type_id: int
    access_str_off: int
    kind: int
    access: str

    @property
    def insn(self) -> int:
        return self.insn_off // 8


@dataclass
class BTFExt:
    """Records by program section name; `*_rec_size` as stored (needed to load them)."""

    flags: int = 0
    func_info: dict[str, list[FuncInfoRecord]] = field(default_factory=dict)
    line_info: dict[str, list[LineInfoRecord]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreReloRecord]] = field(default_factory=dict)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16


def _u32s(data: bytes, off: int, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{n}I", data, off)


def _sections(data: bytes, start: int, length: int, min_rec: int, what: str, btf: BTF):
    """Yield (section name, record size, [record word tuples])."""
    if length == 0:
        return 0, []
    end = start + length
    if length < 4:
        raise BTFError(f".BTF.ext {what} is {length} bytes, too short for its record size",
                       offset=start)
    (rec_size,) = _u32s(data, start, 1)
    if rec_size < min_rec or rec_size % 4 or rec_size > 1 << 16:
        raise BTFError(f".BTF.ext {what} record size {rec_size} is invalid (min {min_rec})",
                       offset=start)
    pos = start + 4
    out = []
    while pos < end:
        if pos + 8 > end:
            raise BTFError(f".BTF.ext {what} section header is truncated", offset=pos)
        name_off, num = _u32s(data, pos, 2)
        name = _string(btf, name_off, what, pos)
        pos += 8
        if num * rec_size > end - pos:
            raise BTFError(f".BTF.ext {what} for {name!r}: {num} records overrun the data",
                           offset=pos, section=name)
        nw = min_rec // 4
        recs = [_u32s(data, pos + k * rec_size, nw) for k in range(num)]
        pos += num * rec_size
        out.append((name, recs))
    return rec_size, out
    return rec_size, out


def _string(btf: BTF, off: int, what: str, where: int) -> str:
    try:
        return btf._checked_string(off)
    except BTFError as e:
        raise BTFError(f".BTF.ext {what}: {e.message}", offset=where) from None


def parse_ext(data: bytes | bytearray | memoryview, btf: BTF) -> BTFExt:
    """Parse a .BTF.ext section whose strings live in `btf`."""
    data = bytes(data)
    if len(data) < _HDR.size:
        raise BTFError(f".BTF.ext is {len(data)} bytes, shorter than its header", offset=0)
    magic, version, flags, hdr_len, f_off, f_len, l_off, l_len = _HDR.unpack_from(data, 0)
    if magic != MAGIC:
        raise BTFError(f"bad .BTF.ext magic 0x{magic:04x}", offset=0)
    if version != 1:
        raise BTFError(f"unsupported .BTF.ext version {version}", offset=2)
    if hdr_len < _HDR.size or hdr_len > len(data):
        raise BTFError(f"bad .BTF.ext header length {hdr_len}", offset=4)
    c_off = c_len = 0
    if hdr_len >= _HDR.size + _CORE.size:
        c_off, c_len = _CORE.unpack_from(data, _HDR.size)
    body = len(data) - hdr_len
    for name, off, ln in (("func_info", f_off, f_len), ("line_info", l_off, l_len),
                          ("core_relo", c_off, c_len)):
        if off + ln > body or (ln and off % 4):
            raise BTFError(f".BTF.ext {name} [{off}, +{ln}) is outside the data ({body} bytes)",
                           offset=hdr_len)
    ext = BTFExt(flags=flags)

    rs, secs = _sections(data, hdr_len + f_off, f_len, 8, "func_info", btf)
    if rs:
        ext.func_info_rec_size = rs
    for name, recs in secs:
        ext.func_info.setdefault(name, []).extend(FuncInfoRecord(r[0], r[1]) for r in recs)

    rs, secs = _sections(data, hdr_len + l_off, l_len, 16, "line_info", btf)
    if rs:
        ext.line_info_rec_size = rs
    for name, recs in secs:
        lst = ext.line_info.setdefault(name, [])
        for r in recs:
            lst.append(LineInfoRecord(r[0], r[1], r[2], r[3],
                                      _string(btf, r[1], "line_info", 0),
                                      _string(btf, r[2], "line_info", 0)))

    rs, secs = _sections(data, hdr_len + c_off, c_len, 16, "core_relo", btf)
    if rs:
        ext.core_relo_rec_size = rs
    for name, recs in secs:
        lst2 = ext.core_relos.setdefault(name, [])
        for r in recs:
            if r[1] >= len(btf):
                raise BTFError(f".BTF.ext core_relo type id {r[1]} is out of range",
                               type_id=r[1], section=name)
            lst2.append(CoreReloRecord(r[0], r[1], r[2], r[3],
                                       _string(btf, r[2], "core_relo", 0)))
    return ext
