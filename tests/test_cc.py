"""bpfarena.cc: compiling BPF C with clang-19 and our headers (no kernel needed)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import bpfarena
from bpfarena import cc
from bpfarena.cli import main as cli_main
from bpfarena.ds import htab as ds_htab
from bpfarena.ds import list as ds_list
from bpfarena.errors import CompileError

EM_BPF = 247

SIMPLE = r"""
#include "bpfarena.h"
BPFARENA_MAP(arena, 4, 0);
int result;
SEC("syscall")
int prog(void *ctx)
{
	int __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!p)
		return 1;
	*p = 42;
	result = *p;
	bpf_arena_free_pages(&arena, p, 1);
	return 0;
}
char _license[] SEC("license") = "GPL";
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _insns(obj: Path, section: str) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) of every 8-byte slot of a section."""
    with open(obj, "rb") as f:
        data = ELFFile(f).get_section_by_name(section).data()
    out = []
    for i in range(0, len(data), 8):
        op, regs = data[i], data[i + 1]
        off = int.from_bytes(data[i + 2:i + 4], "little", signed=True)
        imm = int.from_bytes(data[i + 4:i + 8], "little", signed=True)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def _casts(obj: Path, section: str) -> list[int]:
    return [imm for op, _d, _s, off, imm in _insns(obj, section) if op == 0xBF and off == 1]


def test_include_dir_has_the_headers():
    d = cc.include_dir()
    for h in ("bpfarena.h", "arena_alloc.h", "arena_list.h", "arena_htab.h"):
        assert (d / h).is_file(), h


def test_compile_makes_a_bpf_object(tmp_path):
    src = _write(tmp_path, "simple.bpf.c", SIMPLE)
    out = cc.compile(src)
    assert out == tmp_path / "simple.bpf.o"
    with open(out, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_BPF" or elf.header["e_machine"] == EM_BPF
        names = {s.name for s in elf.iter_sections()}
    assert {"syscall", ".maps", ".BTF", "license"} <= names
    # the dereferences went through cast-to-kernel (imm 1)
    assert 1 in _casts(out, "syscall")


def test_compile_is_exposed_at_top_level(tmp_path):
    src = _write(tmp_path, "simple.bpf.c", SIMPLE)
    out = bpfarena.compile(src, output=tmp_path / "x.o")
    assert out == tmp_path / "x.o" and out.stat().st_size > 0


def test_object_reader_sees_map_extra_and_kfuncs(tmp_path):
    src = _write(tmp_path, "fixed.bpf.c", SIMPLE.replace("BPFARENA_MAP(arena, 4, 0)",
                                                         "BPFARENA_MAP(arena, 4, 1ULL << 44)"))
    spec = bpfarena.ObjectSpec.from_file(str(cc.compile(src)))
    m = spec.maps["arena"]
    assert (m.type, m.flags, m.max_entries, m.map_extra) == (33, 1 << 10, 4, 1 << 44)
    assert spec.programs["prog"].sleepable
    assert {"bpf_arena_alloc_pages", "bpf_arena_free_pages"} <= set(spec.externs)
    assert all(spec.externs[n]["weak"] for n in ("bpf_arena_alloc_pages",))


def test_cache_reuses_and_rebuilds(tmp_path):
    inc = tmp_path / "inc"
    inc.mkdir()
    hdr = _write(inc, "mine.h", "#define MINE 1\n")
    src = _write(tmp_path, "c.bpf.c", '#include "mine.h"\n' + SIMPLE)
    build = tmp_path / "build"
    a = cc.compile(src, output_dir=build, include_dirs=[inc])
    mtime = a.stat().st_mtime_ns
    b = cc.compile(src, output_dir=build, include_dirs=[inc])
    assert a == b and b.stat().st_mtime_ns == mtime
    assert a.name.startswith("c-") and a.name.endswith(".bpf.o")
    hdr.write_text("#define MINE 2\n")  # an included header changed: new key
    c = cc.compile(src, output_dir=build, include_dirs=[inc])
    assert c != a and c.is_file()
    d = cc.compile(src, output_dir=build, include_dirs=[inc], extra_flags=["-DX=1"])
    assert d not in (a, c)
    e = cc.compile(src, output_dir=build, include_dirs=[inc], cpu="v4")
    assert e not in (a, c, d)


def test_compile_error_carries_clang_stderr(tmp_path):
    src = _write(tmp_path, "bad.bpf.c", '#include "bpfarena.h"\nint f(void) { return nope; }\n')
    with pytest.raises(CompileError) as ei:
        cc.compile(src, output_dir=tmp_path / "b")
    assert "nope" in ei.value.stderr
    assert "bad.bpf.c" in str(ei.value)
    assert not list((tmp_path / "b").glob("*"))  # no half-written object left behind


def test_missing_source(tmp_path):
    with pytest.raises(CompileError, match="does not exist"):
        cc.compile(tmp_path / "nothing.bpf.c")


def test_missing_clang_says_what_to_install(tmp_path, monkeypatch):
    src = _write(tmp_path, "simple.bpf.c", SIMPLE)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("BPFARENA_CLANG", raising=False)
    with pytest.raises(CompileError, match=r"apt-get install clang-19"):
        cc.compile(src)
    monkeypatch.setenv("BPFARENA_CLANG", "clang-does-not-exist")
    with pytest.raises(CompileError, match="clang-does-not-exist was not found"):
        cc.compile(src)


def test_force_asm_casts(tmp_path):
    """Without clang's address spaces the macros emit the casts themselves (imm 1, 0x10000)."""
    src = _write(tmp_path, "asm.bpf.c", r"""
#include "bpfarena.h"
BPFARENA_MAP(arena, 4, 0);
__u64 out;
SEC("syscall")
int prog(void *ctx)
{
	int *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!p)
		return 1;
	cast_kern(p);
	*p = 7;
	cast_user(p);
	out = (__u64)p;
	return 0;
}
char _license[] SEC("license") = "GPL";
""")
    out = cc.compile(src, output_dir=tmp_path / "b", extra_flags=["-DBPFARENA_FORCE_ASM"])
    assert sorted(_casts(out, "syscall")) == [1, 0x10000]


def test_arena_global_section(tmp_path):
    src = _write(tmp_path, "g.bpf.c", r"""
#include "bpfarena.h"
BPFARENA_MAP(arena, 4, 0);
__u64 __arena_global counter = 5;
SEC("syscall")
int prog(void *ctx) { counter++; return 0; }
char _license[] SEC("license") = "GPL";
""")
    spec = bpfarena.ObjectSpec.from_file(str(cc.compile(src)))
    assert "counter" in spec.arena_vars
    off = spec.arena_vars["counter"].offset
    assert spec.arena_image[off:off + 8] == (5).to_bytes(8, "little")


@pytest.mark.parametrize("prog", ["arena_htab.bpf.c", "arena_list.bpf.c", "arena_atomics.bpf.c"])
def test_test_programs_compile(bpf_obj, prog):
    assert bpf_obj(prog).stat().st_size > 0


def test_data_structure_headers_refuse_force_asm(tmp_path):
    src = _write(tmp_path, "l.bpf.c", '#include "bpfarena.h"\n#include "arena_list.h"\n')
    with pytest.raises(CompileError, match="address space"):
        cc.compile(src, extra_flags=["-DBPFARENA_FORCE_ASM"])


def _host_cc() -> str | None:
    for name in ("cc", "gcc", "clang-19"):
        if shutil.which(name):
            return name
    return None


def test_headers_from_user_space_c_match_python_layouts(tmp_path):
    """The headers compile as user-space C, and their layouts are the ones ds/ reads."""
    host = _host_cc()
    if host is None:
        pytest.fail("no host C compiler (cc, gcc or clang-19) to compile user-space C")
    src = _write(tmp_path, "u.c", f"""
#include "bpfarena.h"
#include "arena_list.h"
#include "arena_htab.h"
#include "arena_alloc.h"
_Static_assert(sizeof(struct arena_list_node) == {ds_list.NODE_SIZE}, "node");
_Static_assert(sizeof(struct arena_list_head) == 8, "head");
_Static_assert(sizeof(struct arena_htab) == {ds_htab.HTAB_SIZE}, "htab");
_Static_assert(sizeof(struct arena_htab_elem) == {ds_htab.ELEM_SIZE}, "elem");
_Static_assert(offsetof(struct arena_htab_elem, node) == {ds_htab.NODE_OFFSET}, "node off");
_Static_assert(offsetof(struct arena_htab_elem, value) == 8, "value off");
_Static_assert(ARENA_HTAB_DEFAULT_BUCKETS == {ds_htab.DEFAULT_BUCKETS}, "buckets");
int main(void) {{ return 0; }}
""")
    r = subprocess.run([host, "-Wall", "-Werror", f"-I{cc.include_dir()}", "-c", str(src), "-o",
                        str(tmp_path / "u.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_cc(tmp_path, capsys):
    src = _write(tmp_path, "simple.bpf.c", SIMPLE)
    out = tmp_path / "out.o"
    assert cli_main(["cc", str(src), "-o", str(out), "--cflag=-DUNUSED=1"]) == 0
    assert out.is_file()
    assert str(out) in capsys.readouterr().out
    assert os.path.getsize(out) > 0


def test_header_helpers_and_map_macros_run(backend, bpf_obj):
    """Each helper prototype of bpfarena.h calls the helper it names (ids are right)."""
    with bpfarena.load(bpf_obj("ex_helpers.bpf.c"), backend=backend) as obj:
        m = obj.maps["counts"]
        assert (m.type, m.key_size, m.value_size, m.max_entries) == (1, 4, 8, 16)
        assert obj.maps["locked"].type == 2
        res = obj.programs["helpers"].run()
        assert res.retval == 0
        g = obj.globals
        assert 0 < g["t0"] <= g["t1"]
        assert g["rnd_or"] != g["rnd_and"]  # nine random u32s are not all equal
        assert 0 <= g["cpu"] < (os.cpu_count() or 1)
        assert g["loop_sum"] == 55
        assert g["printk_ret"] == len("hello 42") or g["printk_ret"] == len("hello 42\n")
        if res.output:
            assert "hello 42" in res.output
        assert dict(m.items()) == {(8).to_bytes(4, "little"): (9).to_bytes(8, "little")}
        assert int.from_bytes(obj.maps["locked"][0][8:16], "little") == 5


ARENA_FLAGS_PROG = r"""
%s
#include "bpfarena.h"
struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV);
	__uint(max_entries, 3);
} arena SEC(".maps");
const volatile __u32 ours[4] = {BPFARENA_MAP_TYPE_ARENA, BPFARENA_F_MMAPABLE,
				BPFARENA_F_SEGV_ON_FAULT, BPFARENA_F_NO_USER_CONV};
SEC("syscall")
int prog(void *ctx)
{
	return BPF_ANY + BPF_MAP_TYPE_HASH;
}
char _license[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("first", ["#include <linux/bpf.h>", ""], ids=["linux_bpf_h", "alone"])
def test_arena_constants_with_and_without_linux_bpf_h(tmp_path, first):
    # Debian 12's <linux/bpf.h> (6.1) has no arena names; it needs <asm/types.h> from the
    # multiarch include directory, which compile() adds
    src = tmp_path / "flags.bpf.c"
    src.write_text(ARENA_FLAGS_PROG % first)
    spec = bpfarena.ObjectSpec.from_file(bpfarena.compile(src))
    a = spec.maps["arena"]
    assert (a.type, a.flags, a.max_entries) == (33, 0x400 | 0x20000 | 0x40000, 3)
    assert struct.unpack("<4I", spec.maps[".rodata"].data[:16]) == (33, 0x400, 0x20000, 0x40000)


def test_bpfarena_h_with_installed_linux_bpf_h(tmp_path):
    # the header macros and helper prototypes must not clash with /usr/include/linux/bpf.h
    src = tmp_path / "both.bpf.c"
    src.write_text("#include <linux/bpf.h>\n" + SIMPLE)
    spec = bpfarena.ObjectSpec.from_file(bpfarena.compile(src))
    assert spec.maps["arena"].type == 33 and "prog" in spec.programs


def test_multiarch_include_dir_holds_asm_headers():
    d = cc.multiarch_include_dir()
    assert d is not None and (d / "asm" / "types.h").is_file()
    assert cc.multiarch_include_dir() is d  # cached
