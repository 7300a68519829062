"""NumPy export: a structured dtype from BTF, and zero-copy arrays over arena memory.

Bitfields have no NumPy form and are left out of the dtype (their bytes stay covered by the
itemsize); anonymous struct/union members' fields appear in the parent, unions overlap.
"""

from __future__ import annotations

from typing import Any

from ..btf import BTF
from ..btf.types import INT_BOOL, INT_SIGNED, Kind
from ..errors import BTFError
from .values import flat_members, is_char_type
from .view import View, _type_id, arena_address

MAX_DEPTH = 32


def btf_dtype(btf: BTF, type_id: int | str, _depth: int = 0) -> Any:
    """A NumPy dtype with the C layout of a BTF type (offsets and itemsize included)."""
    import numpy as np

    if _depth > MAX_DEPTH:
        raise BTFError("type nesting is too deep for a dtype (a loop?)")
    tid = _type_id(btf, type_id) if isinstance(type_id, str) else type_id
    rid = btf.resolve(tid)
    t = btf.type(rid)
    k = t.kind
    if k == Kind.INT:
        if t.encoding & INT_BOOL and t.size == 1:
            return np.dtype("?")
        if t.size in (1, 2, 4, 8):
            return np.dtype(f"<{'i' if t.encoding & INT_SIGNED else 'u'}{t.size}")
        return np.dtype(f"V{t.size}")
    if k in (Kind.ENUM, Kind.ENUM64):
        if t.size in (1, 2, 4, 8):
            return np.dtype(f"<{'i' if t.kind_flag else 'u'}{t.size}")
        return np.dtype(f"V{t.size}")
    if k == Kind.FLOAT:
        return np.dtype(f"<f{t.size}") if t.size in (2, 4, 8) else np.dtype(f"V{t.size}")
    if k == Kind.PTR:
        return np.dtype("<u8")
    if k == Kind.ARRAY:
        if is_char_type(btf, t.type):
            return np.dtype(f"S{t.nelems}") if t.nelems else np.dtype("V0")
        return np.dtype((btf_dtype(btf, t.type, _depth + 1), (t.nelems,)))
    if k in (Kind.STRUCT, Kind.UNION):
        names, formats, offsets = [], [], []
        for m in flat_members(btf, rid):
            if m.bitfield_size:
                continue
            names.append(m.name)
            formats.append(btf_dtype(btf, m.type_id, _depth + 1))
            offsets.append(m.bit_offset // 8)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": t.size})
    raise BTFError(f"{btf.type_name(tid)} has no NumPy form", type_id=tid)


def to_numpy(arena: Any, ptr: int | View, type: int | str | None = None, count: int = 1,
             btf: BTF | None = None) -> Any:
    """A zero-copy structured array of `count` objects of `type` at arena pointer `ptr`."""
    if isinstance(ptr, View):
        btf = ptr.btf if btf is None else btf
        type = ptr.type_id if type is None else type
        ptr = ptr.address
    if btf is None:
        btf = getattr(arena, "_btf", None)
        if btf is None:
            raise BTFError("no BTF to type the array with: pass btf=")
    if type is None:
        raise TypeError("to_numpy needs a type")
    addr = arena_address(arena, ptr)
    if addr is None:
        raise BTFError(f"pointer 0x{ptr:x} is not inside the arena")
    return arena.numpy(btf_dtype(btf, type), addr, count)
