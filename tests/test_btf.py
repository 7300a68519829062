"""BTF: kernel BTF lookups and layout, clang object BTF/.BTF.ext, CO-RE against vmlinux, fuzzing."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfarena.arena.layout import BPF_MAP_TYPE_ARENA
from bpfarena.btf import BTF, Kind, Member, Type, parse, parse_ext, parse_file
from bpfarena.btf import core as co
from bpfarena.errors import BPFError, BTFError
from bpfarena.view.values import decode_value

VMLINUX = "/sys/kernel/btf/vmlinux"

CORE_SRC = r"""
typedef unsigned int u32;
struct task_struct___local {
    int pid;
    int tgid;
    int bpfarena_missing;
    char comm[16];
} __attribute__((preserve_access_index));

struct bpf_insn___local {
    unsigned char code;
    unsigned char dst_reg:4;
    unsigned char src_reg:4;
    short off;
    int imm;
} __attribute__((preserve_access_index));

enum bpf_map_type___local { BPF_MAP_TYPE_ARENA___local = 1, BPF_MAP_TYPE_NOPE___local = 2 };

struct point { int x; unsigned short y; signed char z[3]; };
struct point g_points[2] = { { 1, 2, { -1, 0, 1 } } };
char g_name[12] = "arena";
unsigned long long g_counter;

static __attribute__((noinline)) int helper(int a) { return a * 3 + g_points[1].x; }

__attribute__((section("tc"))) int core_prog(struct task_struct___local *t)
{
    int r = t->pid;
    r += __builtin_preserve_field_info(t->tgid, 1);
    r += __builtin_preserve_field_info(t->bpfarena_missing, 2);
    r += t->bpfarena_missing;
    r += t->comm[3];
    r += __builtin_preserve_type_info(*(struct task_struct___local *)0, 0);
    r += __builtin_preserve_type_info(*(struct task_struct___local *)0, 1);
    r += __builtin_preserve_enum_value(*(enum bpf_map_type___local *)BPF_MAP_TYPE_ARENA___local, 1);
    r += __builtin_preserve_enum_value(*(enum bpf_map_type___local *)BPF_MAP_TYPE_NOPE___local, 0);
    struct bpf_insn___local *i = (void *)t;
    r += __builtin_preserve_field_info(i->src_reg, 0);
    r += __builtin_preserve_field_info(i->src_reg, 3);
    r += __builtin_preserve_field_info(i->src_reg, 4);
    r += __builtin_preserve_field_info(i->src_reg, 5);
    return r + helper(r);
}

__attribute__((section("tc"))) int plain_prog(void *ctx)
{
    return helper(g_name[0]) + (int)g_counter;
}
"""


def compile_bpf(tmp: Path, src: str, name: str = "prog") -> Path:
    clang = shutil.which("clang-19")
    assert clang, "clang-19 is required for these tests"
    c = tmp / f"{name}.c"
    c.write_text(src)
    o = tmp / f"{name}.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(c), "-o", str(o)],
                   check=True, capture_output=True)
    return o


def sections(path: Path) -> tuple[bytes, bytes]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        return elf.get_section_by_name(".BTF").data(), elf.get_section_by_name(".BTF.ext").data()


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    return parse_file(VMLINUX)


@pytest.fixture(scope="module")
def obj(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return sections(compile_bpf(tmp_path_factory.mktemp("btf"), CORE_SRC))


# --- kernel BTF ----------------------------------------------------------------------------------
def test_vmlinux_arena_kfuncs(vmlinux: BTF) -> None:
    expect = {"bpf_arena_alloc_pages": 5, "bpf_arena_free_pages": 3,
              "bpf_arena_reserve_pages": 3}
    for name, nparams in expect.items():
        fid = vmlinux.find(name, Kind.FUNC)
        func = vmlinux[fid]
        assert func.kind == Kind.FUNC and func.name == name
        proto = vmlinux.type(func.type)
        assert proto.kind == Kind.FUNC_PROTO
        assert len(proto.params) == nparams
        assert vmlinux.find_all(name, "func") == [fid]
    alloc = vmlinux[vmlinux[vmlinux.find("bpf_arena_alloc_pages", "FUNC")].type]
    assert vmlinux.type_name(alloc.type) == "void *"
    assert [vmlinux.type_name(p.type) for p in alloc.params][2] == "u32"
    assert vmlinux.sizeof(alloc.params[2].type) == 4
    assert vmlinux.sizeof(alloc.params[4].type) == 8
    assert not vmlinux.is_signed(alloc.params[2].type)
    assert vmlinux.is_signed(alloc.params[3].type)  # int node_id
    fid = vmlinux.find("bpf_arena_alloc_pages", "FUNC")
    assert vmlinux.type_name(vmlinux[fid].type).startswith("void * (void *, void *, u32, int")
    assert (-1, "bpf_kfunc") in vmlinux.decl_tags(fid)
    with pytest.raises(KeyError):
        vmlinux.find("bpfarena_no_such_function_anywhere", Kind.FUNC)


def test_vmlinux_layout(vmlinux: BTF) -> None:
    insn = vmlinux.find_type("struct bpf_insn")
    assert vmlinux.sizeof(insn) == 8
    assert vmlinux.alignof(insn) == 4
    assert [vmlinux.offsetof(insn, m) for m in ("code", "off", "imm")] == [0, 2, 4]
    ms = {m.name: m for m in vmlinux.members(insn)}
    assert (ms["dst_reg"].bit_offset, ms["dst_reg"].bitfield_size) == (8, 4)
    assert (ms["src_reg"].bit_offset, ms["src_reg"].bitfield_size) == (12, 4)

    lh = vmlinux.find_type("struct list_head")
    assert vmlinux.sizeof(lh) == 16 and vmlinux.offsetof(lh, "prev") == 8
    assert vmlinux.type_name(vmlinux.field(lh, "next").type_id) == "struct list_head *"

    task = vmlinux.find_type("struct task_struct")
    assert vmlinux.sizeof(task) > 1000
    comm = vmlinux.field(task, "comm")
    assert vmlinux.type_name(comm.type_id) == "char[16]"
    assert vmlinux.offsetof(task, "comm[3]") == comm.bit_offset // 8 + 3
    assert vmlinux.offsetof(task, "pid") == vmlinux.field(task, "pid").bit_offset // 8
    # a member reached through a nested struct and an array index
    tasks = vmlinux.field(task, "tasks")
    assert vmlinux.offsetof(task, "tasks.prev") == tasks.bit_offset // 8 + 8

    u32 = vmlinux.find_type("u32")
    assert vmlinux[u32].kind == Kind.TYPEDEF
    assert vmlinux[vmlinux.resolve(u32)].name == "unsigned int"
    assert vmlinux.sizeof(u32) == 4 and not vmlinux.is_signed(u32)
    assert vmlinux.is_signed(vmlinux.find_type("s32"))
    assert vmlinux.find_type("void") == 0
    assert vmlinux[vmlinux.find_type("struct task_struct *")].kind == Kind.PTR
    with pytest.raises(KeyError):
        vmlinux.offsetof(task, "bpfarena_nope")
    with pytest.raises(BTFError):
        vmlinux.sizeof(vmlinux.find("bpf_arena_alloc_pages", "FUNC"))


def test_vmlinux_roundtrip(vmlinux: BTF) -> None:
    data = Path(VMLINUX).read_bytes()
    assert vmlinux.to_bytes() == data
    assert parse(data).to_bytes(fresh=True) == data


# --- object BTF ----------------------------------------------------------------------------------
def test_object_btf_roundtrip_and_types(obj: tuple[bytes, bytes]) -> None:
    raw, _ = obj
    btf = parse(raw)
    assert btf.to_bytes(fresh=True) == raw
    assert btf.to_bytes() == raw
    pt = btf.find_type("struct point")
    assert btf.types[pt] is btf[pt] is btf.type(pt) and len(btf.types) == len(btf)
    assert btf.sizeof(pt) == 12 and btf.alignof(pt) == 4
    assert btf.offsetof(pt, "z[2]") == 8
    var = btf.find("g_points", Kind.VAR)
    assert btf.type_name(btf[var].type) == "struct point[2]"
    secs = {btf.name_of(d): btf[d] for d in btf.datasecs()}
    assert {".data", ".bss"} <= set(secs)
    assert any(btf.name_of(v.type) == "g_counter" for v in secs[".bss"].vars)
    assert {btf.name_of(f) for f in btf.funcs()} == {"core_prog", "plain_prog", "helper"}


def test_object_btf_edit(obj: tuple[bytes, bytes]) -> None:
    raw, _ = obj
    btf = parse(raw)
    data_id = btf.find(".data", Kind.DATASEC)
    sec = btf[data_id]
    var_ids = [v.type for v in sec.vars]
    btf.set_datasec(data_id, size=4096, offsets={var_ids[0]: 2048})
    new_int = btf.add_type(Type(Kind.INT, name="bpfarena_u24", size=4, bits=24))
    pt = btf.find_type("struct point")
    s = btf[pt]
    btf.replace(pt, Type(Kind.STRUCT, name="point2", size=s.size,
                         members=[*s.members, Member("w", new_int, 64)]))
    again = parse(btf.to_bytes())
    assert again[data_id].size == 4096
    assert [v.offset for v in again[data_id].vars if v.type == var_ids[0]] == [2048]
    assert again.find_type("struct point2") == pt
    assert again.members(pt)[-1].name == "w"
    assert again.name_of(again.members(pt)[-1].type_id) == "bpfarena_u24"
    with pytest.raises(KeyError):
        again.find_type("struct point")


def test_split_btf(obj: tuple[bytes, bytes]) -> None:
    base = parse(obj[0])
    int_id = base.find("int", Kind.INT)
    strs = b"split_s\0m\0"
    base_strlen = base.header.str_len
    types = struct.pack("<III", 0, Kind.PTR << 24, int_id)
    types += struct.pack("<III", base_strlen, (Kind.STRUCT << 24) | 1, 8)
    types += struct.pack("<III", base_strlen + 8, len(base), 0)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
    data = hdr + types + strs
    split = parse(data, base=base)
    sid = split.find_type("struct split_s")
    assert sid == len(base) + 1
    assert split.type_name(split.members(sid)[0].type_id) == "int *"
    assert split.find("int", Kind.INT) == int_id  # base types are found through the split
    assert split.to_bytes(fresh=True) == data
    with pytest.raises(BTFError):
        parse(data)  # without its base the type ids and strings are out of range


def test_parse_ext(obj: tuple[bytes, bytes]) -> None:
    raw, ext_raw = obj
    btf = parse(raw)
    ext = parse_ext(ext_raw, btf)
    nfuncs = len(list(btf.funcs()))
    assert sum(len(v) for v in ext.func_info.values()) == nfuncs == 3
    assert {btf.name_of(r.type_id) for r in ext.func_info["tc"]} == {"core_prog", "plain_prog"}
    assert [btf.name_of(r.type_id) for r in ext.func_info[".text"]] == ["helper"]
    assert all(r.insn == r.insn_off // 8 for v in ext.func_info.values() for r in v)
    lines = ext.line_info["tc"]
    assert lines and all(r.file_name.endswith("prog.c") for r in lines)
    assert any("preserve_field_info" in r.line for r in lines)
    assert all(r.line_num > 0 for r in lines)
    relos = ext.core_relos["tc"]
    assert len(relos) >= 12
    assert {btf.name_of(r.type_id) for r in relos} == {
        "task_struct___local", "bpf_insn___local", "bpf_map_type___local"}


def _resolve_all(obj: tuple[bytes, bytes], vmlinux: BTF) -> dict[tuple[str, int, str], co.CoreResult]:
    btf = parse(obj[0])
    ext = parse_ext(obj[1], btf)
    out = {}
    for r in ext.core_relos["tc"]:
        out[(btf.name_of(r.type_id), r.kind, r.access)] = co.resolve_relo(
            btf, r.type_id, r.access, r.kind, vmlinux)
    return out


def test_core_against_vmlinux(obj: tuple[bytes, bytes], vmlinux: BTF) -> None:
    res = _resolve_all(obj, vmlinux)
    task = vmlinux.find_type("struct task_struct")
    t = "task_struct___local"
    pid = res[(t, co.FIELD_BYTE_OFFSET, "0:0")]
    assert pid.local_value == 0 and pid.exists and not pid.poison
    assert pid.target_value == vmlinux.offsetof(task, "pid")
    assert pid.target_type_id == task and pid.target_field_size == 4
    assert res[(t, co.FIELD_BYTE_SIZE, "0:1")].target_value == 4
    missing = res[(t, co.FIELD_EXISTS, "0:2")]
    assert (missing.local_value, missing.target_value, missing.poison) == (1, 0, False)
    assert res[(t, co.FIELD_BYTE_OFFSET, "0:2")].poison
    comm = res[(t, co.FIELD_BYTE_OFFSET, "0:3:3")]
    assert comm.local_value == 12 + 3
    assert comm.target_value == vmlinux.offsetof(task, "comm[3]")
    assert res[(t, co.TYPE_EXISTS, "0")].target_value == 1
    assert res[(t, co.TYPE_SIZE, "0")].target_value == vmlinux.sizeof(task)
    e = "bpf_map_type___local"
    val = res[(e, co.ENUMVAL_VALUE, "0")]
    assert (val.local_value, val.target_value) == (1, BPF_MAP_TYPE_ARENA)
    assert res[(e, co.ENUMVAL_EXISTS, "1")].target_value == 0
    i = "bpf_insn___local"
    assert res[(i, co.FIELD_BYTE_OFFSET, "0:2")].target_value == 1
    assert res[(i, co.FIELD_SIGNED, "0:2")].target_value == 0
    assert res[(i, co.FIELD_LSHIFT_U64, "0:2")].target_value == 64 - (12 + 4 - 8)
    assert res[(i, co.FIELD_RSHIFT_U64, "0:2")].target_value == 64 - 4
    for r in res.values():  # the compiler's values agree with ours on the local side
        assert r.local_value >= 0


def test_core_local_and_flavors(obj: tuple[bytes, bytes], vmlinux: BTF) -> None:
    btf = parse(obj[0])
    lid = btf.find_type("struct task_struct___local")
    r = co.resolve_relo(btf, lid, "0", co.TYPE_ID_LOCAL, vmlinux)
    assert r.target_value == lid
    r = co.resolve_relo(btf, lid, "0", co.TYPE_ID_TARGET, vmlinux)
    assert r.target_value == vmlinux.find_type("struct task_struct")
    assert co.essential_name("task_struct___local") == "task_struct"
    assert co.essential_name("a____b") == "a____b"
    assert co.essential_name("plain") == "plain"
    # no vmlinux type of that name: type relos give 0, field relos poison
    pt = btf.find_type("struct point")
    assert co.resolve_relo(btf, pt, "0", co.TYPE_EXISTS, vmlinux).target_value == 0
    assert co.resolve_relo(btf, pt, "0:0", co.FIELD_BYTE_OFFSET, vmlinux).poison
    with pytest.raises(BTFError):
        co.resolve_relo(btf, lid, "0:99", co.FIELD_BYTE_OFFSET, vmlinux)
    with pytest.raises(BTFError):
        co.resolve_relo(btf, lid, "x", co.FIELD_BYTE_OFFSET, vmlinux)


# --- malformed input -----------------------------------------------------------------------------
def exercise(btf: BTF) -> None:
    """Touch every lookup a consumer might make; only bpfarena errors may come out."""
    for tid in range(len(btf)):
        for fn in (btf.type_name, btf.sizeof, btf.alignof, btf.resolve, btf.is_signed,
                   btf.decl_tags):
            try:
                fn(tid)
            except BTFError:
                pass
        try:
            t = btf[tid]
            if t.kind in (Kind.STRUCT, Kind.UNION):
                for m in btf.members(tid):
                    if m.name:
                        btf.offsetof(tid, m.name)
            if t.kind == Kind.VAR and btf.sizeof(tid) <= 256:
                decode_value(btf, tid, bytes(btf.sizeof(tid)))
        except (BTFError, KeyError):
            pass
    for name in list(btf.names())[:50]:
        btf.find_all(name)
    btf.to_bytes(fresh=True)


def _check(data: bytes) -> None:
    try:
        btf = parse(data)
    except BTFError:
        return
    exercise(btf)


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(data=st.data())
def test_fuzz_truncated(obj: tuple[bytes, bytes], data: st.DataObject) -> None:
    raw = obj[0]
    n = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(BTFError):
        parse(raw[:n])


@SETTINGS
@given(data=st.data())
def test_fuzz_flips(obj: tuple[bytes, bytes], data: st.DataObject) -> None:
    raw = bytearray(obj[0])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               min_size=1, max_size=8))
    for pos, val in flips:
        raw[pos] = val
    try:
        _check(bytes(raw))
    except BPFError:
        pass


@SETTINGS
@given(body=st.binary(max_size=400), hdr=st.booleans())
def test_fuzz_garbage(body: bytes, hdr: bool) -> None:
    if hdr:  # a plausible header, so the garbage reaches the type parser
        tl = len(body) // 2 & ~3
        body = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, tl, tl, len(body) - tl) + body
    _check(body)


@SETTINGS
@given(data=st.data())
def test_fuzz_ext(obj: tuple[bytes, bytes], data: st.DataObject) -> None:
    btf = parse(obj[0])
    raw = bytearray(obj[1])
    mode = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if mode == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif mode == "flip":
        for pos, val in data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1),
                                                     st.integers(0, 255)), min_size=1,
                                           max_size=8)):
            raw[pos] = val
    else:
        raw = bytearray(raw[:32]) + data.draw(st.binary(max_size=200))
    try:
        ext = parse_ext(bytes(raw), btf)
    except BTFError:
        return
    for recs in ext.core_relos.values():
        for r in recs:
            try:
                co.parse_spec(btf, r.type_id, r.access, r.kind)
            except BTFError:
                pass


def test_malformed_examples(obj: tuple[bytes, bytes]) -> None:
    raw = obj[0]
    bad_magic = b"\x00\x00" + raw[2:]
    with pytest.raises(BTFError, match="magic"):
        parse(bad_magic)
    hdr = list(struct.unpack_from("<HBBIIIII", raw))
    hdr[3] = 8  # header length too small
    with pytest.raises(BTFError, match="header"):
        parse(struct.pack("<HBBIIIII", *hdr) + raw[24:])
    # the first record's info word: an unknown kind
    bad_kind = bytearray(raw)
    struct.pack_into("<I", bad_kind, 24 + 4, 25 << 24)
    with pytest.raises(BTFError, match="kind"):
        parse(bytes(bad_kind))
    # a PTR to a type id past the end
    loop = struct.pack("<III", 0, Kind.PTR << 24, 99)
    h = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 1)
    with pytest.raises(BTFError, match="out of range"):
        parse(h + loop + b"\0")
    # typedef loops must not hang or recurse forever
    td = struct.pack("<III", 0, Kind.TYPEDEF << 24, 2) + struct.pack("<III", 0, Kind.TYPEDEF << 24, 1)
    h = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 24, 24, 1)
    btf = parse(h + td + b"\0")
    for fn in (btf.resolve, btf.sizeof, btf.alignof):
        with pytest.raises(BTFError):
            fn(1)
    # a pointer to itself, and an array of itself
    rec = struct.pack("<III", 0, Kind.PTR << 24, 1)
    rec += struct.pack("<IIIIII", 0, Kind.ARRAY << 24, 0, 2, 2, 4)
    h = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(rec), len(rec), 1)
    btf = parse(h + rec + b"\0")
    with pytest.raises(BTFError):
        btf.type_name(1)
    with pytest.raises(BTFError):
        btf.sizeof(2)
    with pytest.raises(BTFError):
        decode_value(btf, 2, bytes(64))
    with pytest.raises(BTFError):
        parse_ext(b"\x9f\xeb\x01\x00" + bytes(4), btf)
