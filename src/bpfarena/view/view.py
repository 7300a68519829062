"""Typed, pointer-following views over arena memory.

A `View` is (arena, user address, BTF type). Members read through `arena.read` each time (so a
freed page reads zero, as the back end says) and assignments write through `arena.write`.
Struct/union/array members come back as Views (char arrays as str), scalars as ints, and pointers
into the arena (user form or 32-bit form) as Views of their pointee; NULL is None, any other
pointer (and void/char/function pointers) stays an int. Member names win over View helpers on
attribute access except for a few reserved ones (`address`, `type_name`, `cast`, ...); `v["x"]`
always means the member.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..btf import BTF
from ..btf.types import Kind, MemberInfo
from ..errors import BTFError
from .values import (
    decode_value,
    encode_value,
    flat_members,
    is_char_type,
    read_bitfield,
    write_bitfield,
)

U32 = 0xFFFFFFFF


def _type_id(btf: BTF, type: int | str) -> int:
    if isinstance(type, int):
        btf.type(type)  # range check
        return type
    s = type.strip()
    if s.endswith("*"):
        raise KeyError(f"view a pointee type, not a pointer: {type!r}")
    return btf.find_type(s)


def arena_address(arena: Any, ptr: int) -> int | None:
    """User address of `ptr` (user form or 32-bit form) if it points into the arena, else None."""
    start = arena.user_vm_start
    addr = ((start & ~U32) | ptr) if 0 < ptr <= U32 else ptr
    if start <= addr < start + arena.size:
        return addr
    return None


def view(arena: Any, ptr: int, type: int | str, btf: BTF | None = None) -> View:
    """A View of the object of BTF `type` (id or "struct htab") at arena pointer `ptr`."""
    if btf is None:
        btf = getattr(arena, "_btf", None)
        if btf is None:
            raise BTFError("no BTF to type the view with: pass btf=")
    tid = _type_id(btf, type)
    addr = arena_address(arena, ptr)
    if addr is None:
        raise BTFError(f"pointer 0x{ptr:x} is not inside the arena "
                       f"[0x{arena.user_vm_start:x}, +0x{arena.size:x})")
    return make_view(arena, addr, tid, btf)


def make_view(arena: Any, addr: int, tid: int, btf: BTF) -> View:
    k = btf.resolved(tid).kind
    if k in (Kind.STRUCT, Kind.UNION):
        return StructView(arena, addr, tid, btf)
    if k == Kind.ARRAY:
        return ArrayView(arena, addr, tid, btf)
    return View(arena, addr, tid, btf)


class View:
    """A typed object in arena memory; scalars and pointers at top level use `.value`."""

    __slots__ = ("_arena", "_addr", "_tid", "_btf")

    def __init__(self, arena: Any, addr: int, tid: int, btf: BTF) -> None:
        object.__setattr__(self, "_arena", arena)
        object.__setattr__(self, "_addr", addr)
        object.__setattr__(self, "_tid", tid)
        object.__setattr__(self, "_btf", btf)

    # --- identity -----------------------------------------------------------------------------
    @property
    def address(self) -> int:
        """User-form address of the object."""
        return self._addr

    @property
    def kern_address(self) -> int:
        """The 32-bit (BPF-side) form of the address."""
        return self._addr & U32

    @property
    def type_id(self) -> int:
        return self._tid

    @property
    def type_name(self) -> str:
        return self._btf.type_name(self._tid)

    @property
    def size(self) -> int:
        return self._btf.sizeof(self._tid)

    @property
    def btf(self) -> BTF:
        return self._btf

    @property
    def arena(self) -> Any:
        return self._arena

    # --- whole value ------------------------------------------------------------------------------
    def _size(self) -> int:
        return self._btf.sizeof(self._tid)

    def raw(self) -> bytes:
        return self._arena.read(self._addr, self._size())

    def value(self) -> Any:
        """The plain Python value (int, list, str, dict ...), as decode_value gives it."""
        return decode_value(self._btf, self._tid, self.raw())

    to_dict = value

    def set(self, value: Any) -> None:
        """Overwrite the whole object (dict/list/int/bytes as encode_value takes them)."""
        self._arena.write(self._addr, encode_value(self._btf, self._tid, value, self._size()))

    def __int__(self) -> int:
        v = self.value()
        if not isinstance(v, int):
            raise TypeError(f"{self.type_name} is not a scalar")
        return int(v)

    __index__ = __int__

    # --- pointer arithmetic and casts -------------------------------------------------------------
    def cast(self, type: int | str) -> View:
        """The same address seen as another type."""
        return make_view(self._arena, self._addr, _type_id(self._btf, type), self._btf)

    def at(self, index: int) -> View:
        """The object `index` elements further on (C pointer arithmetic)."""
        return make_view(self._arena, self._addr + index * self._size(), self._tid, self._btf)

    def deref(self) -> Any:
        """For a pointer-typed view: what the pointer refers to (see pointer rules)."""
        t = self._btf.resolved(self._tid)
        if t.kind != Kind.PTR:
            raise TypeError(f"{self.type_name} is not a pointer")
        return _follow(self._arena, self._btf, t.type, _u64(self._arena, self._addr))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, View):
            return (self._addr, self._tid, self._btf) == (other._addr, other._tid, other._btf)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._addr, self._tid))

    def __repr__(self) -> str:
        return f"<View {self.type_name} at 0x{self._addr:x}>"

    # attribute writes go through __setattr__ in StructView only
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot set {name!r} on a view of {self.type_name}")


def _u64(arena: Any, addr: int) -> int:
    return int.from_bytes(arena.read(addr, 8), "little")


def _follow(arena: Any, btf: BTF, target_tid: int, ptr: int) -> Any:
    """Pointer rule: NULL -> None; void/char/function pointers -> int; into arena -> View."""
    if ptr == 0:
        return None
    rid = btf.resolve(target_tid)
    t = btf.type(rid)
    if t.kind in (Kind.VOID, Kind.FUNC_PROTO, Kind.FWD) or is_char_type(btf, rid):
        return ptr
    addr = arena_address(arena, ptr)
    if addr is None:
        return ptr
    return make_view(arena, addr, target_tid, btf)


class StructView(View):
    """A struct/union: `v.member`, `v["member"]`, `v[i]` (the i-th struct from here)."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        # members win over View helpers (a struct may well have a `size` or `value` member),
        # except the few names a view must always answer
        if name[0] != "_" and name not in _RESERVED:
            m = object.__getattribute__(self, "_members")()
            if name in m:
                return object.__getattribute__(self, "_get")(name)
        return object.__getattribute__(self, name)

    def _members(self) -> dict[str, MemberInfo]:
        btf = self._btf
        cache = btf._member_cache.get(self._tid)
        if cache is None:
            cache = {m.name: m for m in flat_members(btf, self._tid)}
            btf._member_cache[self._tid] = cache
        return cache

    def keys(self) -> list[str]:
        return list(self._members())

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._members()))

    def __contains__(self, name: object) -> bool:
        return name in self._members()

    def _member(self, name: str) -> MemberInfo:
        m = self._members().get(name)
        if m is None:
            raise AttributeError(f"{self.type_name} has no member {name!r}")
        return m

    def address_of(self, name: str) -> int:
        """User address of a member (its first byte)."""
        return self._addr + self._member(name).bit_offset // 8

    def member_view(self, name: str) -> View:
        """A View of the member itself (also for scalars and pointers)."""
        m = self._member(name)
        return make_view(self._arena, self._addr + m.bit_offset // 8, m.type_id, self._btf)

    def _get(self, name: str) -> Any:
        m = self._member(name)
        btf = self._btf
        if m.bitfield_size:
            start = m.bit_offset // 8
            n = (m.bit_offset % 8 + m.bitfield_size + 7) // 8
            raw = self._arena.read(self._addr + start, n)
            return read_bitfield(btf, MemberInfo(m.name, m.type_id, m.bit_offset % 8,
                                                 m.bitfield_size), raw)
        addr = self._addr + m.bit_offset // 8
        t = btf.resolved(m.type_id)
        if t.kind == Kind.ARRAY and is_char_type(btf, t.type):
            return decode_value(btf, m.type_id, self._arena.read(addr, btf.sizeof(m.type_id)))
        if t.kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY):
            return make_view(self._arena, addr, m.type_id, btf)
        if t.kind == Kind.PTR:
            return _follow(self._arena, btf, t.type, _u64(self._arena, addr))
        size = btf.sizeof(m.type_id)
        return decode_value(btf, m.type_id, self._arena.read(addr, size))

    def _put(self, name: str, value: Any) -> None:
        m = self._member(name)
        btf = self._btf
        if m.bitfield_size:
            start = m.bit_offset // 8
            n = (m.bit_offset % 8 + m.bitfield_size + 7) // 8
            buf = bytearray(self._arena.read(self._addr + start, n))
            write_bitfield(btf, MemberInfo(m.name, m.type_id, m.bit_offset % 8, m.bitfield_size),
                           buf, value)
            self._arena.write(self._addr + start, bytes(buf))
            return
        if isinstance(value, View):
            t = btf.resolved(m.type_id)
            if t.kind == Kind.PTR:
                value = value.address
            else:
                value = value.raw()
        if value is None:
            value = 0
        size = btf.sizeof(m.type_id)
        self._arena.write(self._addr + m.bit_offset // 8,
                          encode_value(btf, m.type_id, value, size))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            self._put(name, value)
        except AttributeError:
            raise AttributeError(f"{self.type_name} has no member {name!r}") from None

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self.at(key)
        try:
            return self._get(key)
        except AttributeError as e:
            raise KeyError(str(e)) from None

    def __setitem__(self, key: str, value: Any) -> None:
        try:
            self._put(key, value)
        except AttributeError as e:
            raise KeyError(str(e)) from None

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self._members():
            yield name, self._get(name)


_RESERVED = frozenset({"address", "type_name", "type_id", "to_dict", "cast", "at", "keys",
                       "items", "address_of", "member_view", "kern_address"})


class ArrayView(View):
    """A C array: len(), indexing (negative too), slices (lists), iteration, assignment."""

    __slots__ = ()

    def _arr(self):
        t = self._btf.resolved(self._tid)
        return t

    def __len__(self) -> int:
        return self._arr().nelems

    def _elem(self) -> tuple[int, int]:
        t = self._arr()
        return t.type, self._btf.sizeof(t.type)

    def _index(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {self.type_name}")
        return i

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = self._index(i)
        etid, esz = self._elem()
        addr = self._addr + i * esz
        btf = self._btf
        t = btf.resolved(etid)
        if t.kind == Kind.ARRAY and is_char_type(btf, t.type):
            return decode_value(btf, etid, self._arena.read(addr, esz))
        if t.kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY):
            return make_view(self._arena, addr, etid, btf)
        if t.kind == Kind.PTR:
            return _follow(self._arena, btf, t.type, _u64(self._arena, addr))
        return decode_value(btf, etid, self._arena.read(addr, esz))

    def __setitem__(self, i: int, value: Any) -> None:
        i = self._index(i)
        etid, esz = self._elem()
        if isinstance(value, View):
            value = value.address if self._btf.resolved(etid).kind == Kind.PTR else value.raw()
        if value is None:
            value = 0
        self._arena.write(self._addr + i * esz, encode_value(self._btf, etid, value, esz))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def address_of(self, i: int) -> int:
        return self._addr + self._index(i) * self._elem()[1]

    def tolist(self) -> list[Any]:
        return list(self)


def container_of(member: View | int, type: int | str, member_name: str, *,
                 arena: Any = None, btf: BTF | None = None) -> View:
    """The struct holding `member` (a View, or an address with arena= and btf=), C-style."""
    if isinstance(member, View):
        arena = member.arena if arena is None else arena
        btf = member.btf if btf is None else btf
        addr = member.address
    else:
        if arena is None:
            raise TypeError("container_of(address, ...) needs arena=")
        btf = btf if btf is not None else getattr(arena, "_btf", None)
        if btf is None:
            raise BTFError("no BTF to type the view with: pass btf=")
        a = arena_address(arena, member)
        if a is None:
            raise BTFError(f"pointer 0x{member:x} is not inside the arena")
        addr = a
    tid = _type_id(btf, type)
    return make_view(arena, addr - btf.offsetof(tid, member_name), tid, btf)
