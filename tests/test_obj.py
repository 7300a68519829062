"""ObjectSpec.from_file against real clang-19 objects, cross-checked with llvm-objdump-19."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfarena.errors import BTFError, ObjectError
from bpfarena.obj import ObjectSpec, RelocKind, VarSpec
from bpfarena.obj.sections import attach_target, lookup_section

GOLDEN = Path(__file__).parent / "golden"


# --- helpers -------------------------------------------------------------------------------------

def objdump(path: Path) -> dict[str, dict]:
    """Per function: section, slot count, raw slot bytes, and the relocations objdump prints."""
    out = subprocess.run(["llvm-objdump-19", "-dr", str(path)], capture_output=True, text=True,
                         check=True).stdout
    funcs: dict[str, dict] = {}
    section = cur = None
    for line in out.splitlines():
        if m := re.match(r"Disassembly of section (.+):$", line):
            section = m.group(1)
        elif m := re.match(r"[0-9a-f]{16} <(.+)>:$", line):
            cur = funcs[m.group(1)] = {"section": section, "slots": [], "relocs": [],
                                       "start": None}
        elif (m := re.match(r"\s+(\d+):\t([0-9a-f ]+)\t", line)) and cur is not None:
            if cur["start"] is None:
                cur["start"] = int(m.group(1))
            raw = bytes.fromhex(m.group(2).replace(" ", ""))
            cur["slots"] += [raw[i:i + 8] for i in range(0, len(raw), 8)]
        elif (m := re.match(r"\s+([0-9a-f]+):\s+(R_BPF_\w+)\s+(\S+)", line)) and cur is not None:
            # objdump's offset is bytes from the section start
            cur["relocs"].append((int(m.group(1), 16) // 8 - cur["start"], m.group(2),
                                  m.group(3)))
    return funcs


@pytest.fixture(scope="module")
def basic(bpf_obj) -> Path:
    return bpf_obj("obj_basic.bpf.c")


@pytest.fixture(scope="module")
def misc(bpf_obj) -> Path:
    return bpf_obj("obj_misc.bpf.c")


@pytest.fixture(scope="module")
def bspec(basic) -> ObjectSpec:
    return ObjectSpec.from_file(str(basic))


@pytest.fixture(scope="module")
def mspec(misc) -> ObjectSpec:
    return ObjectSpec.from_file(str(misc))


def func_at(spec: ObjectSpec, prog: str) -> dict[int, str]:
    """Linked slot index -> function name, from func_info and the object's BTF."""
    p = spec.programs[prog]
    return {fi.insn_index: spec.btf.type(fi.type_id).name for fi in p.func_info}


def call_targets(spec: ObjectSpec, prog: str) -> list[tuple[int, str]]:
    """(slot, callee name) of every pseudo call and BPF_PSEUDO_FUNC ld_imm64 in a program."""
    names = func_at(spec, prog)
    kfuncs = {r.insn_index for r in spec.programs[prog].relocations if r.kind == RelocKind.KFUNC}
    out = []
    for i, ins in enumerate(spec.programs[prog].insns):
        if i in kfuncs:  # clang emits kfunc calls as src=1 too; the loader patches them
            continue
        if (ins.opcode == 0x85 and ins.src == 1) or (ins.opcode == 0x18 and ins.src == 4):
            out.append((i, names[i + ins.imm + 1]))
    return out


# --- programs ------------------------------------------------------------------------------------

def test_programs_sections_and_types(bspec, mspec):
    got = {n: (p.section, p.prog_type, p.expected_attach_type, p.sleepable, p.attach_to)
           for n, p in bspec.programs.items()}
    assert got == {
        "prog_arena": ("syscall", 31, 0, True, None),
        "prog_map": ("syscall", 31, 0, True, None),
        "prog_loop": ("tp_btf/sched_switch", 26, 23, False, "sched_switch"),
        "prog_core": ("fentry.s/do_nanosleep", 26, 24, True, "do_nanosleep"),
    }
    got = {n: (p.section, p.prog_type, p.expected_attach_type, p.attach_to)
           for n, p in mspec.programs.items()}
    # xdp_helper is a static function in the "xdp" section: a subprogram, not an entry program
    assert got == {
        "xdp_a": ("xdp", 6, 37, None),
        "xdp_b": ("xdp", 6, 37, None),
        "kp": ("kprobe/do_sys_open", 2, 0, "do_sys_open"),
        "tc_ksym": ("tc", 3, 0, None),
        "odd": ("no_such_type", 0, 0, None),  # unknown section: left for the loader to refuse
    }
    assert mspec.programs["xdp_a"].license == "Dual BSD/GPL"


@pytest.mark.parametrize("name", ["basic", "misc"])
def test_instructions_match_objdump(name, request):
    path = request.getfixturevalue(name)
    spec = ObjectSpec.from_file(str(path))
    dump = objdump(path)
    for pname, p in spec.programs.items():
        parts = [pname, *p.subprograms]
        assert len(p.insns) == sum(len(dump[f]["slots"]) for f in parts), pname
        base = 0
        for f in parts:
            for k, raw in enumerate(dump[f]["slots"]):
                ins = p.insns[base + k]
                op, regs, off, imm = struct.unpack("<BBhi", raw)
                assert (ins.opcode, ins.dst, ins.off) == (op, regs & 0xF, off), (pname, f, k)
                linked = (op == 0x85 and (regs >> 4) == 1) or (
                    op == 0x18 and any(r[0] == k and r[2] == ".text" for r in dump[f]["relocs"]))
                if not linked:  # only pseudo calls and function pointers are rewritten
                    assert (ins.src, ins.imm) == (regs >> 4, imm), (pname, f, k)
            base += len(dump[f]["slots"])


def test_relocations_match_objdump(basic, bspec):
    """Every R_BPF_64_64 / R_BPF_64_32 objdump shows in an entry function becomes a Relocation
    at the same slot naming the right target, except calls to .text (linked instead)."""
    dump = objdump(basic)
    for pname, p in bspec.programs.items():
        rel = {r.insn_index: r for r in p.relocations}
        for k, typ, sym in dump[pname]["relocs"]:
            if sym in (".text", "shared_sub"):  # code references: linked, not relocated
                assert k not in rel
                continue
            r = rel[k]
            if r.kind == RelocKind.MAP:
                assert r.target == sym
            elif r.kind == RelocKind.MAP_VALUE:
                assert sym in bspec.maps[r.target].variables
                assert r.offset == bspec.maps[r.target].variables[sym].offset
            elif r.kind == RelocKind.ARENA:
                assert r.target == "arena" and r.offset == bspec.arena_vars[sym].offset
            else:
                assert r.kind == RelocKind.KFUNC and r.target == sym and typ == "R_BPF_64_32"


def test_relocation_details(bspec):
    got = [(r.insn_index, r.kind.value, r.target, r.offset, r.weak)
           for r in bspec.programs["prog_arena"].relocations]
    assert got == [
        (1, "map", "arena", 0, False),
        (7, "kfunc", "bpf_arena_alloc_pages", 0, True),
        (10, "arena", "arena", 0, False),
        (14, "arena", "arena", 8, False),
        (21, "arena", "arena", 32, False),
        (25, "map", "arena", 0, False),
        (29, "kfunc", "bpf_arena_free_pages", 0, False),
        (30, "map_value", ".rodata", 0, False),
        # relocations of the appended subprograms: shared_sub at 37 (bss_var at +1),
        # add_static at 44 (data_var at +0)
        (38, "map_value", ".bss", 0, False),
        (44, "map_value", ".data", 0, False),
    ]
    for p in bspec.programs.values():
        for r in p.relocations:
            op = p.insns[r.insn_index].opcode
            assert op == (0x85 if r.kind == RelocKind.KFUNC else 0x18)
    # loop_cb's bss_arr[] access: the section offset of bss_arr is 8
    assert [(r.kind.value, r.target, r.offset) for r in bspec.programs["prog_loop"].relocations
            ] == [("map_value", ".bss", 8)]


def test_subprogram_linking(bspec, mspec):
    assert bspec.programs["prog_arena"].subprograms == ["shared_sub", "add_static"]
    assert bspec.programs["prog_map"].subprograms == ["shared_sub", "add_static"]
    assert bspec.programs["prog_core"].subprograms == []
    assert func_at(bspec, "prog_arena") == {0: "prog_arena", 37: "shared_sub", 44: "add_static"}
    assert call_targets(bspec, "prog_arena") == [(33, "shared_sub"), (37, "add_static")]
    # shared_sub is reached from two programs, each with its own copy and offsets
    assert call_targets(bspec, "prog_map") == [(10, "shared_sub"), (25, "add_static")]
    # static helper inside a program section, shared by two programs of that section
    assert mspec.programs["xdp_a"].subprograms == ["xdp_helper"]
    assert mspec.programs["xdp_b"].subprograms == ["xdp_helper"]
    assert call_targets(mspec, "xdp_a") == [(1, "xdp_helper")]
    assert call_targets(mspec, "xdp_b") == [(1, "xdp_helper")]


def test_bpf_loop_callback_pointer(bspec):
    p = bspec.programs["prog_loop"]
    assert p.subprograms == ["loop_cb"]
    ld = p.insns[1]
    assert (ld.opcode, ld.src, ld.dst) == (0x18, 4, 2)  # BPF_PSEUDO_FUNC into r2
    assert call_targets(bspec, "prog_loop") == [(1, "loop_cb")]
    assert 1 + ld.imm + 1 == 8  # prog_loop is 8 slots; loop_cb follows


def test_btf_ext_records(bspec):
    p = bspec.programs["prog_core"]
    # byte offset of tgid (field #1), byte size and existence of pid (field #0)
    assert [(c.insn_index, c.access, c.kind) for c in p.core_relos] == [
        (0, "0:1", 0), (1, "0:0", 1), (4, "0:0", 2)]
    assert len({c.type_id for c in p.core_relos}) == 1
    t = bspec.btf.type(p.core_relos[0].type_id)
    assert (t.name, [m.name for m in t.members]) == ("task_struct", ["pid", "tgid"])
    assert p.btf_func_id == bspec.btf.find("prog_core", "func")
    lines = bspec.programs["prog_arena"].line_info
    assert lines[0].insn_index == 0 and "prog_arena" in lines[0].line
    # line_info of the appended subprograms is shifted to their linked position
    sub = [li for li in lines if li.insn_index >= 44]
    assert sub and all("add_static" in li.line or "data_var" in li.line or "}" in li.line
                       or "return" in li.line for li in sub)
    assert [li.insn_index for li in lines] == sorted(li.insn_index for li in lines)


# --- maps and globals ----------------------------------------------------------------------------

def test_btf_maps(bspec, mspec):
    a = bspec.maps["arena"]
    assert (a.type, a.max_entries, a.flags, a.map_extra) == (33, 10, 0x400, 0x100000000 << 4)
    assert bspec.arena_map == "arena" and bspec.arena is a
    h = bspec.maps["hmap"]
    assert (h.type, h.key_size, h.value_size, h.max_entries, h.flags) == (1, 4, 16, 128, 1)
    assert bspec.btf.type(h.value_type_id).name == "val"
    assert bspec.btf.sizeof(h.key_type_id) == 4
    assert bspec.btf.type(h.btf_var_id).name == "hmap"
    am = bspec.maps["amap"]
    assert (am.type, am.key_size, am.value_size, am.max_entries, am.pinning) == (2, 4, 16, 4, 1)
    o = mspec.maps["outer"]
    assert (o.type, o.key_size, o.value_size, o.max_entries) == (12, 4, 4, 2)
    assert (o.inner.type, o.inner.key_size, o.inner.value_size, o.inner.max_entries) == (
        2, 4, 8, 1)


def test_global_data_maps(bspec, mspec):
    d = bspec.maps[".data"]
    assert d.data == struct.pack("<i4xQ", 7, 0x1122334455667788)
    assert (d.type, d.key_size, d.value_size, d.max_entries, d.flags, d.readonly) == (
        2, 4, 16, 1, 0x400, False)
    assert {n: (v.offset, v.size) for n, v in d.variables.items()} == {
        "data_var": (0, 4), "data_var2": (8, 8)}
    r = bspec.maps[".rodata"]
    assert r.readonly and r.flags == 0x480 and r.data == struct.pack("<i", 42) + b"hello\0"
    assert {n: (v.offset, v.size) for n, v in r.variables.items()} == {
        "ro_var": (0, 4), "ro_str": (4, 6)}
    b = bspec.maps[".bss"]
    assert b.data == bytes(40) and b.value_size == 40
    assert {n: (v.offset, v.size) for n, v in b.variables.items()} == {
        "bss_var": (0, 4), "bss_arr": (8, 32)}
    assert bspec.btf.sizeof(b.variables["bss_arr"].type_id) == 32
    # custom data section and string literals (referenced by section symbol + addend)
    assert mspec.maps[".data.custom"].data == struct.pack("<i", 3)
    s = mspec.maps[".rodata.str1.1"]
    assert s.readonly and s.data == b"abcdef\0xyz\0"
    rel = {(r.target, r.offset) for r in mspec.programs["kp"].relocations}
    assert rel == {(".bss", 0), (".rodata.str1.1", 0), (".rodata.str1.1", 7)}
    assert ".data" not in mspec.maps and ".rodata" not in mspec.maps


def test_arena_globals(bspec):
    assert bspec.arena_image == struct.pack("<i4xQQQi", 5, 1, 2, 3, 0)
    assert {n: (v.offset, v.size) for n, v in bspec.arena_vars.items()} == {
        "arena_counter": (0, 4), "arena_vals": (8, 24), "arena_zero": (32, 4)}


def test_externs_license_version(bspec, mspec):
    btf = bspec.btf
    assert bspec.externs == {
        "bpf_arena_alloc_pages": {"kind": "func", "weak": True, "section": ".ksyms",
                                  "btf_id": btf.find("bpf_arena_alloc_pages", "func")},
        "bpf_arena_free_pages": {"kind": "func", "weak": False, "section": ".ksyms",
                                 "btf_id": btf.find("bpf_arena_free_pages", "func")},
    }
    e = mspec.externs["bpf_prog_active"]
    assert (e["kind"], e["weak"]) == ("var", False)
    assert mspec.btf.type(e["btf_id"]).name == "bpf_prog_active"
    assert [(r.kind.value, r.target) for r in mspec.programs["tc_ksym"].relocations] == [
        ("ksym", "bpf_prog_active")]
    assert (bspec.license, mspec.license, mspec.kernel_version) == ("GPL", "Dual BSD/GPL",
                                                                    0x41400)


def test_raw_facts_for_the_loader(basic, bspec):
    assert bspec.btf_raw[:2] == b"\x9f\xeb" and bspec.btf_ext_raw[:2] == b"\x9f\xeb"
    assert bspec.section_sizes[".bss"] == 40 and bspec.section_sizes[".addr_space.1"] == 36
    assert bspec.symbol_values["hmap"] == 32 and bspec.symbol_values["arena_zero"] == 32


def test_object_without_btf(build_dir):
    from bpfarena.cc import compile as cc

    progs = Path(__file__).parent / "progs"
    spec = ObjectSpec.from_file(str(cc(progs / "obj_nobtf.bpf.c", output_dir=build_dir,
                                       extra_flags=["-g0"])))
    assert spec.btf is None and spec.btf_raw == b"" and spec.programs["bump"].btf_func_id is None
    assert spec.maps[".data"].variables == {"counter": VarSpec("counter", 0, 4, 0, ".data")}
    assert spec.maps[".bss"].variables == {"total": VarSpec("total", 0, 8, 0, ".bss")}
    assert [(r.kind.value, r.target) for r in spec.programs["bump"].relocations] == [
        ("map_value", ".data"), ("map_value", ".bss")]
    # BTF-defined maps cannot be read without BTF
    misc = cc(progs / "obj_misc.bpf.c", output_dir=build_dir, extra_flags=["-g0"])
    expect(misc.read_bytes(), match="needs BTF", section=".maps")


def test_section_table():
    assert lookup_section("uprobe.s/foo").sleepable
    assert lookup_section("lsm.s/file_open").attach_type == 27
    assert lookup_section("fmod_ret/x").attach_type == 26
    assert lookup_section("iter/task").attach_type == 28
    assert lookup_section("struct_ops/x").prog_type == 27
    assert lookup_section("cgroup_skb/egress").attach_type == 1
    assert lookup_section("kprobe").prog_type == 2
    assert lookup_section("kprobefoo") is None and lookup_section("nonsense") is None
    assert attach_target("raw_tp/sys_enter") == "sys_enter" and attach_target("xdp") is None


# --- determinism and golden ----------------------------------------------------------------------

def summary(spec: ObjectSpec) -> dict:
    return {
        "programs": {n: {"section": p.section, "type": p.prog_type, "n_insns": len(p.insns),
                         "subprograms": p.subprograms,
                         "relocations": [[r.insn_index, r.kind.value, r.target, r.offset, r.weak]
                                         for r in p.relocations],
                         "func_info": [[f.insn_index, f.type_id] for f in p.func_info],
                         "core": [[c.insn_index, c.type_id, c.access, c.kind]
                                  for c in p.core_relos],
                         "lines": len(p.line_info)}
                     for n, p in spec.programs.items()},
        "maps": {n: [m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.map_extra,
                     (m.data or b"").hex(), {v.name: [v.offset, v.size, v.type_id]
                                             for v in m.variables.values()}]
                 for n, m in spec.maps.items()},
        "arena": [spec.arena_map, spec.arena_image.hex(),
                  {v.name: [v.offset, v.size] for v in spec.arena_vars.values()}],
        "externs": spec.externs,
    }


@pytest.mark.parametrize("name", ["basic", "misc"])
def test_golden_and_deterministic(name, request):
    path = request.getfixturevalue(name)
    a = ObjectSpec.from_file(str(path))
    b = ObjectSpec.from_file(str(path))
    assert a == b
    assert a == ObjectSpec.from_bytes(path.read_bytes(), str(path))
    got = json.dumps(summary(a), indent=1, sort_keys=True)
    golden = GOLDEN / f"obj_{name}.json"
    if os.environ.get("BPFARENA_UPDATE_GOLDEN") == "1":
        golden.write_text(got + "\n")
    assert golden.exists(), f"{golden} is missing: run with BPFARENA_UPDATE_GOLDEN=1"
    assert got + "\n" == golden.read_text()


# --- malformed input -----------------------------------------------------------------------------

def _elf(data: bytes):
    import io

    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(data))


def _section_off(data: bytes, name: str) -> tuple[int, int]:
    s = _elf(data).get_section_by_name(name)
    return s["sh_offset"], s["sh_size"]


def expect(data: bytes, exc=ObjectError, match: str | None = None, **ctx):
    with pytest.raises(exc, match=match) as ei:
        ObjectSpec.from_bytes(data, "bad.o")
    for k, v in ctx.items():
        assert getattr(ei.value, k) == v, (k, str(ei.value))
    return ei.value


def test_truncated_everywhere(basic):
    data = basic.read_bytes()
    for n in list(range(0, 128, 7)) + list(range(128, len(data), max(1, len(data) // 97))):
        expect(data[:n])


def test_header_checks(basic):
    data = bytearray(basic.read_bytes())
    bad = bytearray(data)
    bad[18:20] = (62).to_bytes(2, "little")
    expect(bytes(bad), match="e_machine is 62")
    bad = bytearray(data)
    bad[4] = 1
    expect(bytes(bad), match="ELFCLASS64")
    bad = bytearray(data)
    bad[5] = 2
    expect(bytes(bad), match="little-endian")
    bad = bytearray(data)
    bad[16:18] = (2).to_bytes(2, "little")
    expect(bytes(bad), match="ET_REL")
    expect(b"\x7fELF" + bytes(100), match="ELFCLASS64")
    expect(b"hello" * 20, match="not an ELF")


def _rel_entry(data: bytes, relsec: str, k: int) -> int:
    off, _ = _section_off(data, relsec)
    return off + 16 * k


def test_bad_relocation_symbol_index(basic):
    data = bytearray(basic.read_bytes())
    p = _rel_entry(bytes(data), ".relsyscall", 0)
    data[p + 8:p + 16] = ((9999 << 32) | 1).to_bytes(8, "little")
    expect(bytes(data), match="symbol index 9999", section=".relsyscall")


def test_relocation_at_wrong_instruction(basic):
    data = bytearray(basic.read_bytes())
    p = _rel_entry(bytes(data), ".relsyscall", 0)  # 'arena' at slot 1 -> move to slot 0
    data[p:p + 8] = (0).to_bytes(8, "little")
    expect(bytes(data), match="not ld_imm64", section="syscall", insn_index=0, symbol="arena")
    data = bytearray(basic.read_bytes())
    data[p:p + 8] = (0x10000).to_bytes(8, "little")
    expect(bytes(data), match="outside the code", section="syscall")
    data = bytearray(basic.read_bytes())
    data[p + 8:p + 12] = (7).to_bytes(4, "little")  # relocation type 7
    expect(bytes(data), match="unsupported relocation type 7", insn_index=1)


def _shdr(data: bytes, name: str) -> int:
    """File offset of section `name`'s header."""
    e = _elf(data)
    idx = next(k for k in range(e.num_sections()) if e.get_section(k).name == name)
    return e["e_shoff"] + idx * e["e_shentsize"]


def test_call_into_the_middle_of_a_function(basic):
    data = basic.read_bytes()
    off, _ = _section_off(data, ".text")
    assert data[off:off + 8] == bytes.fromhex("8510000006000000")  # shared_sub: call add_static
    bad = bytearray(data)
    bad[off + 4:off + 8] = (7).to_bytes(4, "little")  # slot 8: inside add_static
    expect(bytes(bad), match="not the start of a function", section=".text",
           symbol="shared_sub", insn_index=0)


def test_missing_sections(basic):
    data = basic.read_bytes()
    # point .BTF's sh_name one byte later ("BTF"): the maps lose their description
    h = _shdr(data, ".BTF")
    bad = bytearray(data)
    bad[h:h + 4] = (int.from_bytes(data[h:h + 4], "little") + 1).to_bytes(4, "little")
    expect(bytes(bad), match="needs BTF", section=".maps")
    # .symtab turned into PROGBITS: no symbol table
    h = _shdr(data, ".symtab")
    bad = bytearray(data)
    bad[h + 4:h + 8] = (1).to_bytes(4, "little")
    expect(bytes(bad), match="symbol table")
    # .maps renamed: its relocations now point at an unknown section
    h = _shdr(data, ".maps")
    bad = bytearray(data)
    bad[h:h + 4] = (int.from_bytes(data[h:h + 4], "little") + 1).to_bytes(4, "little")
    expect(bytes(bad), match="section 'maps'|legacy 'maps'")


def test_symbol_in_unknown_section(basic):
    data = basic.read_bytes()
    h = _shdr(data, ".data")  # ".data" -> "data": no longer a global-data section
    bad = bytearray(data)
    bad[h:h + 4] = (int.from_bytes(data[h:h + 4], "little") + 1).to_bytes(4, "little")
    expect(bytes(bad), match="section 'data'", section=".text", symbol="data_var", insn_index=7)


def test_maps_without_datasec(basic):
    data = basic.read_bytes()
    off, size = _section_off(data, ".BTF")
    btf = data[off:off + size]
    i = btf.index(b"\0.maps\0") + 2
    bad = bytearray(data)
    bad[off + i] = ord("x")  # DATASEC ".maps" becomes ".xaps"
    expect(bytes(bad), match="no DATASEC '.maps'", section=".maps")


def test_corrupt_btf(basic):
    data = bytearray(basic.read_bytes())
    off, size = _section_off(bytes(data), ".BTF")
    data[off] ^= 0xFF
    expect(bytes(data), exc=BTFError, match="magic")
    data = bytearray(basic.read_bytes())
    data[off + 24 + 4:off + 24 + 8] = (0x1F << 24).to_bytes(4, "little")  # kind 31
    expect(bytes(data), exc=BTFError)
    data = bytearray(basic.read_bytes())
    eoff, _ = _section_off(bytes(data), ".BTF.ext")
    data[eoff + 8:eoff + 12] = (1 << 20).to_bytes(4, "little")  # func_info offset far away
    expect(bytes(data), exc=BTFError, match="BTF.ext")


def test_arena_rules(bpf_obj):
    expect(bpf_obj("obj_two_arenas.bpf.c").read_bytes(), match="at most one arena")
    expect(bpf_obj("obj_no_arena.bpf.c").read_bytes(), match="BPF_MAP_TYPE_ARENA",
           section=".addr_space.1")


def test_file_errors(tmp_path):
    with pytest.raises(ObjectError, match="cannot read"):
        ObjectSpec.from_file(str(tmp_path / "missing.o"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_object_errors(basic, misc, data):
    raw = bytearray((basic if data.draw(st.booleans()) else misc).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[pos] = data.draw(st.integers(0, 255))
        else:  # aim at header-ish words: sizes, offsets, indices
            word = data.draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            raw[pos:pos + 4] = word.to_bytes(4, "little")
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    try:
        ObjectSpec.from_bytes(bytes(raw[:len(raw)]), "fuzz.o")
    except ObjectError:
        pass


def _set_symbol(data: bytes, name: str, value: int | None = None, size: int | None = None) -> bytes:
    symtab = _elf(data).get_section_by_name(".symtab")
    for i, sym in enumerate(symtab.iter_symbols()):
        if sym.name == name:
            base = symtab["sh_offset"] + i * symtab["sh_entsize"]
            out = bytearray(data)
            if value is not None:
                struct.pack_into("<Q", out, base + 8, value)
            if size is not None:
                struct.pack_into("<Q", out, base + 16, size)
            return bytes(out)
    raise AssertionError(f"no symbol {name}")


@pytest.mark.parametrize("name,section", [("arena", ".maps"), ("hmap", ".maps"),
                                          ("data_var", ".data"), ("bss_var", ".bss"),
                                          ("ro_var", ".rodata")])
@pytest.mark.parametrize("value,size", [(0x10 << 56, None), (1 << 20, None), (0, 1 << 40),
                                        (None, 1 << 63)])
def test_symbol_outside_its_section_is_refused(basic, name, section, value, size):
    # found by fuzzing: a .maps symbol at 0x10 << 56 passed the reader and crashed the kernel
    # loader's BTF fixup with struct.error
    data = _set_symbol(basic.read_bytes(), name, value, size)
    expect(data, match="outside its section", section=section, symbol=name)


def test_btf_fixup_out_of_range_values_are_object_errors(bspec):
    from bpfarena.kernel import btfload

    raw = btfload.RawBTF(bspec.btf_raw)
    with pytest.raises(ObjectError, match="outside the section") as ei:
        btfload.fixup(raw, {".data": (4, {"data_var": 1 << 40})})
    assert ei.value.section == ".data" and ei.value.symbol == "data_var"
    raw = btfload.RawBTF(bspec.btf_raw)
    with pytest.raises(ObjectError, match="32 bits"):
        btfload.fixup(raw, {".data": (None, {"data_var": 1 << 40})})
    ds = next(t for t in range(1, len(raw.index)) if raw.index[t].kind == btfload.K_DATASEC)
    with pytest.raises(ObjectError, match="32 bits"):
        raw.set_member(ds, 0, 1, -1, 4)
