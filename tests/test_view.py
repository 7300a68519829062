"""Typed values and views: BTF from a clang-19 object, over a fake arena and over real arenas."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpfarena
from bpfarena.btf import BTF, parse
from bpfarena.errors import BTFError
from bpfarena.view import View, btf_dtype, container_of, decode_value, encode_value, to_numpy, view

SRC = r"""
struct node { struct node *next; struct node *prev; };
struct elem {
    long key;
    struct node node;
    int vals[3];
    char tag[8];
    unsigned char raw[4];
};
enum color { RED = 1, GREEN = 2, NEG = -5 };
typedef unsigned int u32;
struct htab {
    u32 n_buckets;
    int size;
    struct elem *head;
    void *ctx;
    char *name;
    struct elem buckets[2];
    unsigned bf:3;
    int sbf:5;
    _Bool flag;
    enum color c;
    float f;
    double d;
    short grid[2][3];
    unsigned long long big;
    signed char sc;
    union { int as_int; unsigned char as_bytes[4]; };
    const volatile int cv;
};
struct htab g_htab;
struct elem g_elems[4];
char g_msg[16] = "hello";
unsigned char g_blob[4] = { 1, 2, 0xff, 0 };
long long g_neg = -7;
"""

PAGE = 4096


@pytest.fixture(scope="module")
def btf(tmp_path_factory: pytest.TempPathFactory) -> BTF:
    clang = shutil.which("clang-19")
    assert clang, "clang-19 is required for these tests"
    d = tmp_path_factory.mktemp("view")
    (d / "v.c").write_text(SRC)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(d / "v.c"), "-o",
                    str(d / "v.o")], check=True, capture_output=True)
    with open(d / "v.o", "rb") as f:
        return parse(ELFFile(f).get_section_by_name(".BTF").data())


class FakeArena:
    """Just enough of bpfarena.Arena for views: a bytearray at a 64-bit base address."""

    def __init__(self, pages: int = 4, start: int = 0x7F12_3450_0000) -> None:
        self.buf = bytearray(pages * PAGE)
        self.user_vm_start = start
        self.size = len(self.buf)

    def _off(self, addr: int, n: int) -> int:
        off = (addr - self.user_vm_start) & 0xFFFFFFFF
        assert off + n <= self.size, hex(addr)
        return off

    def read(self, addr: int, n: int) -> bytes:
        off = self._off(addr, n)
        return bytes(self.buf[off:off + n])

    def write(self, addr: int, data: bytes) -> None:
        off = self._off(addr, len(data))
        self.buf[off:off + len(data)] = data

    def numpy(self, dtype, addr: int, count: int):
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=self._off(addr, 0))


def var_type(btf: BTF, name: str) -> int:
    return btf[btf.find(name, "var")].type


# --- values --------------------------------------------------------------------------------------
def test_decode_globals(btf: BTF) -> None:
    tid = var_type(btf, "g_msg")
    assert decode_value(btf, tid, b"hello" + bytes(11)) == "hello"
    assert decode_value(btf, tid, b"\xff\xfe" + bytes(14)) == b"\xff\xfe" + bytes(14)
    assert decode_value(btf, tid, b"ab\0cd" + bytes(11)) == b"ab\0cd" + bytes(11)
    blob = var_type(btf, "g_blob")
    assert decode_value(btf, blob, bytes([1, 2, 0xFF, 0])) == [1, 2, 255, 0]
    neg = var_type(btf, "g_neg")
    assert decode_value(btf, neg, (-7 & (1 << 64) - 1).to_bytes(8, "little")) == -7
    # the VAR itself decodes like its type
    assert decode_value(btf, btf.find("g_neg", "var"), encode_value(btf, neg, -7, 8)) == -7
    assert decode_value(None, 0, b"\x01\x02") == b"\x01\x02"
    assert encode_value(None, 0, 5, 4) == b"\x05\0\0\0"
    assert encode_value(None, 0, -1, 2) == b"\xff\xff"
    assert encode_value(btf, 0, b"\x01", 4) == b"\x01\0\0\0"
    with pytest.raises(TypeError):
        encode_value(None, 0, 5, 3)


def test_struct_roundtrip(btf: BTF) -> None:
    tid = btf.find_type("struct htab")
    size = btf.sizeof(tid)
    value = {
        "n_buckets": 0xFFFFFFFF, "size": -2, "head": 0x1234, "ctx": 0, "name": 7,
        "buckets": [{"key": -1, "node": {"next": 1, "prev": 2}, "vals": [1, -2, 3],
                     "tag": "abc", "raw": [9, 8, 7, 6]},
                    {"key": 5, "node": {"next": 0, "prev": 0}, "vals": [0, 0, 0],
                     "tag": "", "raw": [0, 0, 0, 0]}],
        "bf": 7, "sbf": -16, "flag": True, "c": -5, "f": 1.5, "d": -2.25,
        "grid": [[1, -1, 2], [-2, 3, -3]], "big": 1 << 63, "sc": -128, "as_int": -1,
        "as_bytes": [255, 255, 255, 255], "cv": 3,
    }
    raw = encode_value(btf, tid, value, size)
    assert len(raw) == size
    back = decode_value(btf, tid, raw)
    assert back == value
    assert back["flag"] is True and isinstance(back["f"], float)
    # missing keys stay zero; enumerators by name; short lists and strings pad with zeros
    raw = encode_value(btf, tid, {"c": "GREEN", "grid": [[5]], "buckets": [{"tag": "x"}]}, size)
    back = decode_value(btf, tid, raw)
    assert back["c"] == 2 and back["grid"] == [[5, 0, 0], [0, 0, 0]]
    assert back["buckets"][0]["tag"] == "x" and back["n_buckets"] == 0 and back["sbf"] == 0
    with pytest.raises(ValueError):
        encode_value(btf, tid, {"bf": 8}, size)
    with pytest.raises(ValueError):
        encode_value(btf, tid, {"sbf": 32}, size)
    with pytest.raises(ValueError):
        encode_value(btf, tid, {"buckets": [{"tag": "123456789"}]}, size)
    with pytest.raises(KeyError):
        encode_value(btf, tid, {"nope": 1}, size)
    with pytest.raises(TypeError):
        encode_value(btf, tid, {"size": "big"}, size)
    with pytest.raises(BTFError):
        decode_value(btf, tid, bytes(size - 1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.integers(-(1 << 63), (1 << 63) - 1), vals=st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=3),
       tag=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
       raw=st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_elem_property(btf: BTF, key: int, vals: list[int], tag: str, raw: list[int]) -> None:
    tid = btf.find_type("struct elem")
    v = {"key": key, "vals": vals, "tag": tag, "raw": raw}
    back = decode_value(btf, tid, encode_value(btf, tid, v, btf.sizeof(tid)))
    assert back["key"] == key and back["vals"] == vals + [0] * (3 - len(vals))
    assert back["raw"] == raw and back["node"] == {"next": 0, "prev": 0}
    # an 8-char tag fills the array with no NUL: still text
    assert back["tag"] == tag


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=48, max_size=48))
def test_elem_bytes_roundtrip(btf: BTF, raw: bytes) -> None:
    """Any bytes of a padding-free struct decode to a value that encodes back to them."""
    tid = btf.find_type("struct elem")
    assert btf.sizeof(tid) == 48
    value = decode_value(btf, tid, raw)
    assert isinstance(value["tag"], (str, bytes))
    assert encode_value(btf, tid, value, 48) == raw


# --- views ---------------------------------------------------------------------------------------
def build_list(arena, btf: BTF, base: int, n: int) -> View:
    """A struct htab at `base` whose `head` starts a doubly linked list of n elems after it."""
    h = view(arena, base, "struct htab", btf)
    esz = btf.sizeof(btf.find_type("struct elem"))
    first = base + btf.sizeof(h.type_id)
    elems = [view(arena, first + i * esz, "struct elem", btf) for i in range(n)]
    for i, e in enumerate(elems):
        e.key = i * 10 - 5
        e.tag = f"e{i}"
        e.vals = [i, i + 1, i + 2]
        # store `next` in the 32-bit form and `prev` in the user form: both must be followed
        e.node.next = elems[i + 1].node.address & 0xFFFFFFFF if i + 1 < n else 0
        e.node.prev = elems[i - 1].node if i else None
    h.head = elems[0]
    h.n_buckets = n
    return h


def check_views(arena, btf: BTF, base: int) -> None:
    h = build_list(arena, btf, base, 3)
    assert h.n_buckets == 3 and h["n_buckets"] == 3
    assert h.type_name == "struct htab" and h.address == base
    assert h.ctx is None and h.name is None  # NULL pointers
    h.ctx = 0xDEAD
    assert h.ctx == 0xDEAD  # void * stays an int
    h.name = h.address
    assert h.name == h.address  # char * stays an int, even into the arena
    head = h.head
    assert isinstance(head, View) and head.key == -5 and head.tag == "e0"
    # walk the list through node pointers with container_of
    keys = []
    node = head.node
    while node is not None:
        e = container_of(node, "struct elem", "node")
        keys.append(e.key)
        node = node.next
    assert keys == [-5, 5, 15]
    second = container_of(head.node.next, "struct elem", "node")
    assert second.node.prev == head.node
    assert container_of(second.node.address, "struct elem", "node", arena=arena, btf=btf) == second
    # arrays: len, index, negative index, slices, iteration, write-through
    assert len(head.vals) == 3 and list(head.vals) == [0, 1, 2] and head.vals[-1] == 2
    head.vals[1] = -9
    assert head.vals[:2] == [0, -9]
    assert arena.read(head.vals.address_of(1), 4) == (-9 & 0xFFFFFFFF).to_bytes(4, "little")
    # nested arrays and structs inside the htab
    h.grid[1][2] = -3
    assert h.grid[1].value() == [0, 0, -3] and len(h.grid) == 2
    b1 = h.buckets[1]
    b1.key = 77
    assert h.buckets[1].key == 77 and h.buckets[1].address == h.address_of("buckets") + b1.size
    # bitfields, bool, enum, float, anonymous union members
    h.bf, h.sbf, h.flag, h.c, h.f = 5, -3, True, "NEG", 0.5
    assert (h.bf, h.sbf, h.flag, h.c, h.f) == (5, -3, True, -5, 0.5)
    h.as_int = 0x01020304
    assert list(h.as_bytes) == [4, 3, 2, 1]
    # a member called `size` is the member, not the view's size
    h.size = 123
    assert h.size == 123 and h["size"] == 123
    # whole-object values and casts
    d = h.to_dict()
    assert d["n_buckets"] == 3 and d["head"] in (head.address, head.address & 0xFFFFFFFF)
    assert h.cast("struct elem").key == int.from_bytes(arena.read(base, 8), "little", signed=True)
    assert head.at(1) == second
    with pytest.raises(AttributeError):
        _ = h.nope
    with pytest.raises(KeyError):
        h["nope"] = 1
    with pytest.raises(IndexError):
        _ = head.vals[3]
    # a pointer outside the arena stays an int
    h.head = head.address & 0xFFFFFFFF
    assert h.head == head  # the 32-bit form is followed too
    h.head = 0xFFFF_8880_0000_1000
    assert h.head == 0xFFFF_8880_0000_1000
    # NumPy: a zero-copy structured array over the elements
    arr = to_numpy(arena, head.address, "struct elem", 3, btf)
    assert list(arr["key"]) == [-5, 5, 15]
    assert arr["tag"][2] == b"e2" and list(arr["vals"][0]) == [0, -9, 2]
    arr["key"][2] = 1234
    assert second.at(1).key == 1234  # the array shares the arena's memory
    dt = btf_dtype(btf, "struct htab")
    assert dt.itemsize == btf.sizeof(btf.find_type("struct htab"))
    assert dt.fields["buckets"][1] == btf.offsetof(btf.find_type("struct htab"), "buckets")
    assert "bf" not in dt.names and "as_int" in dt.names


def test_views_fake_arena(btf: BTF) -> None:
    arena = FakeArena()
    check_views(arena, btf, arena.user_vm_start + 64)
    # a view can start from the 32-bit form of the pointer
    v = view(arena, (arena.user_vm_start + 64) & 0xFFFFFFFF, "struct htab", btf)
    assert v.address == arena.user_vm_start + 64 and v.n_buckets == 3
    with pytest.raises(BTFError):
        view(arena, arena.user_vm_start + arena.size + PAGE, "struct htab", btf)
    with pytest.raises(KeyError):
        view(arena, arena.user_vm_start, "struct nope", btf)


def test_views_real_arena(btf: BTF, backend: str) -> None:
    with bpfarena.Arena(pages=16, backend=backend) as arena:
        p = arena.alloc_pages(2)
        check_views(arena, btf, p)
        v = arena.view(p, "struct htab", btf=btf)
        assert v.n_buckets == 3
        arena.free_pages(p, 2)
        assert v.n_buckets == 0 and v.head is None  # freed pages read back as zero
