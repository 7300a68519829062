"""Loading clang-built objects into a Collection and driving them from Python (every back end)."""

from __future__ import annotations

import errno
import os

import pytest

import bpfarena
from bpfarena import _sys
from bpfarena.errors import ArenaError, MapError, VerifierError
from bpfarena.obj import ObjectSpec


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def _u64(v: int) -> bytes:
    return (v & (1 << 64) - 1).to_bytes(8, "little")


@pytest.fixture
def globals_obj(bpf_obj, backend):
    with bpfarena.load(bpf_obj("load_globals.bpf.c"), backend=backend) as obj:
        yield obj


@pytest.fixture
def arena_obj(bpf_obj, backend):
    with bpfarena.load(bpf_obj("load_arena.bpf.c"), backend=backend) as obj:
        yield obj


def test_collection_shape(globals_obj, backend):
    assert globals_obj.backend == backend
    assert set(globals_obj.programs) == {"compute", "use_maps"}
    assert {"counts", "slots"} <= set(globals_obj.maps)
    assert globals_obj.arena is None
    assert globals_obj.programs["compute"].section == "syscall"


def test_globals_initial_values_typed(globals_obj):
    g = globals_obj.globals
    assert g["counter"] == 5
    assert g["negative"] == -7  # signed through BTF
    assert g["greeting"] == "hello"  # char array as str
    assert g["arr"] == [0, 0, 0, 0]
    assert g["ro_factor"] == 3
    assert g["bss_result"] == 0


def test_globals_written_by_bpf_and_subprogram_call(globals_obj):
    res = globals_obj.programs["compute"].run()
    # counter 5 -> 6, triple_plus(6) = 6 * ro_factor + 1 through a bpf-to-bpf call
    assert res.retval == 19
    g = globals_obj.globals
    assert g["counter"] == 6
    assert g["bss_result"] == 19
    assert g["arr"] == [6, 12, 18, 24]
    assert g["greeting"] == "jello"


def test_globals_written_by_python_seen_by_bpf(globals_obj):
    g = globals_obj.globals
    g["counter"] = 100
    assert globals_obj.programs["compute"].run().retval == 101 * 3 + 1
    g["negative"] = -12345
    globals_obj.programs["use_maps"].run()
    assert globals_obj.maps["slots"][2] == _u64(-12345)


def test_hash_and_array_maps(globals_obj):
    counts, slots = globals_obj.maps["counts"], globals_obj.maps["slots"]
    prog = globals_obj.programs["use_maps"]
    assert len(counts) == 0
    assert prog.run().retval == 0  # inserts keys 1..3 with value 1
    assert sorted(counts.items()) == [(_u32(k), _u64(1)) for k in (1, 2, 3)]
    assert prog.run().retval == 3
    counts[2] = 40
    assert counts.lookup(2) == _u64(40)
    assert prog.run().retval == 42
    assert sorted(counts.lookup_batch()) == sorted(counts.items())
    assert counts.delete(1) is True
    assert counts.delete(1) is False
    assert counts.lookup(1) is None
    with pytest.raises(KeyError):
        counts[1]
    assert sorted(counts.keys()) == [_u32(2), _u32(3)]
    # an array map: every index exists, values as written by BPF (slot 2 = .data `negative`)
    assert len(slots) == 8
    assert slots[2] == _u64(-7)
    slots.update(5, _u64(99))
    batch = dict(slots.lookup_batch())
    assert len(batch) == 8 and batch[_u32(5)] == _u64(99) and batch[_u32(2)] == _u64(-7)


def test_lookup_batch_many(globals_obj):
    counts = globals_obj.maps["counts"]
    for k in range(64):
        counts[k] = k * 3
    got = counts.lookup_batch()
    assert len(got) == 64
    assert sorted(got) == [(_u32(k), _u64(k * 3)) for k in range(64)]


def test_arena_globals_initial_values(arena_obj):
    arena = arena_obj.arena
    assert arena is not None
    ag = arena.globals
    assert ag["a_value"] == 42
    assert ag["a_name"] == "arena"
    addr = ag.address("a_value")
    assert arena.contains(addr, 4)
    assert arena.read_u32(addr) == 42
    assert arena_obj.programs["read_globals"].run().retval == 42
    assert ag["a_seen"] == 84


def test_arena_globals_written_by_python_seen_by_bpf(arena_obj):
    ag = arena_obj.arena.globals
    ag["a_value"] = 7
    assert arena_obj.programs["read_globals"].run().retval == 7
    assert ag["a_seen"] == 14
    assert arena_obj.arena.read_u64(ag.address("a_seen")) == 14


def test_arena_pages_allocated_by_bpf(arena_obj):
    arena = arena_obj.arena
    assert arena_obj.programs["alloc"].run().retval == 0
    p = arena_obj.globals["alloc_addr"]
    assert p != 0 and arena.contains(p, 2 * 4096)
    assert p & ~0xFFFFFFFF == arena.user_vm_start & ~0xFFFFFFFF  # the user form of the pointer
    assert [arena.read_u64(p + 8 * i) for i in range(8)] == [1000 + i for i in range(8)]
    assert arena.read_u64(p + 4096) == 0xDEADBEEF
    # the pointer BPF stored in an arena global is the same user address
    assert arena.read_u64(arena.globals.address("a_ptr")) == p
    # globals sit at the start of the arena (libbpf <= 1.6 placement), so the
    # allocation went elsewhere
    assert arena.globals.address("a_value") - arena.user_vm_start < 4096
    assert p - arena.user_vm_start >= 4096


def test_core_field_info_against_kernel_btf(bpf_obj, backend):
    from bpfarena.btf import parse_file

    vmlinux = parse_file("/sys/kernel/btf/vmlinux")
    task = vmlinux.find("task_struct", "struct")
    with bpfarena.load(bpf_obj("load_core.bpf.c"), backend=backend) as obj:
        res = obj.programs["core_offsets"].run()
        assert res.retval == vmlinux.offsetof(task, "tgid")
        assert obj.globals["off_tgid"] == vmlinux.offsetof(task, "tgid")
        assert obj.globals["size_pid"] == 4
        assert obj.globals["has_max"] == 1
        assert obj.globals["has_bogus"] == 0


def test_close_releases_every_fd(bpf_obj, backend):
    paths = [bpf_obj("load_globals.bpf.c"), bpf_obj("load_arena.bpf.c")]
    specs = [ObjectSpec.from_file(str(p)) for p in paths]
    before = _fds()
    objs = [bpfarena.load(s, backend=backend) for s in specs]
    for o in objs:
        next(iter(o.programs.values())).run()
    if backend == "kernel":
        assert _fds() > before
    for o in objs:
        o.close()
    assert _fds() == before
    objs[0].close()  # closing twice is harmless
    assert _fds() == before


def test_failed_load_leaks_nothing(bpf_obj, backend):
    import dataclasses

    from bpfarena.errors import ObjectError

    # a relocation against a map the object does not define: found only after the maps, the
    # BTF and the first program exist, all of which must be released again
    spec = ObjectSpec.from_file(str(bpf_obj("load_globals.bpf.c")))
    prog = spec.programs["use_maps"]
    prog.relocations = [dataclasses.replace(r, target="no_such_map") if r.target == "slots"
                        else r for r in prog.relocations]
    before = _fds()
    with pytest.raises(ObjectError, match="no_such_map"):
        bpfarena.load(spec, backend=backend)
    assert _fds() == before


def test_arena_placement_end_only_where_supported(bpf_obj, kernel):
    from bpfarena.errors import NotSupportedError
    from bpfarena.kernel.loader import arena_globals_at_end

    path = bpf_obj("load_arena.bpf.c")
    if not arena_globals_at_end():
        with pytest.raises(NotSupportedError):
            bpfarena.load(path, backend="kernel", arena_placement="end")
        with bpfarena.load(path, backend="kernel", arena_placement="auto") as obj:
            assert obj.arena.globals.address("a_value") == obj.arena.user_vm_start
            assert obj.programs["read_globals"].run().retval == 42
    else:
        with bpfarena.load(path, backend="kernel", arena_placement="end") as obj:
            off = obj.arena.globals.address("a_value") - obj.arena.user_vm_start
            assert off == obj.arena.size - 4096
            assert obj.programs["read_globals"].run().retval == 42
    with pytest.raises(ValueError):
        bpfarena.load(path, backend="kernel", arena_placement="middle")


def test_verifier_log_on_request(bpf_obj, kernel):
    with bpfarena.load(bpf_obj("load_globals.bpf.c"), backend="kernel", log_level=1) as obj:
        assert "processed" in obj.programs["compute"].log


def test_repeat_reports_mean_duration(globals_obj):
    res = globals_obj.programs["compute"].run(repeat=3)
    assert res.retval == 8 * 3 + 1  # counter 5 -> 8 over three runs
    assert globals_obj.globals["counter"] == 8
    assert res.duration_ns >= 0


def test_kfuncs_and_ksyms(bpf_obj, backend):
    with bpfarena.load(bpf_obj("load_ksyms.bpf.c"), backend=backend) as obj:
        # an absent weak kfunc: its existence test is false, the guarded call never runs
        assert obj.programs["weak_missing"].run().retval == 2
        # a typed __ksym variable resolves to a non-NULL kernel address
        assert obj.programs["ksym_var"].run().retval == 1


def test_missing_strong_kfunc_is_named(bpf_obj, kernel):
    import dataclasses

    from bpfarena.errors import NotSupportedError
    from bpfarena.obj.spec import RelocKind

    spec = ObjectSpec.from_file(str(bpf_obj("load_ksyms.bpf.c")))
    prog = spec.programs["weak_missing"]
    prog.relocations = [dataclasses.replace(r, weak=False) if r.kind is RelocKind.KFUNC else r
                        for r in prog.relocations]
    assert any(r.kind is RelocKind.KFUNC for r in prog.relocations)
    before = _fds()
    with pytest.raises(NotSupportedError, match="bpfarena_no_such_kfunc"):
        bpfarena.load(spec, backend="kernel")
    assert _fds() == before


def test_percpu_array_values_per_cpu(bpf_obj, kernel):
    from bpfarena.kernel.maps import possible_cpus

    with bpfarena.load(bpf_obj("load_percpu.bpf.c"), backend="kernel") as obj:
        m = obj.maps["pcpu"]
        assert obj.programs["bump"].run(repeat=2).retval == 0
        vals = m[1]
        assert isinstance(vals, list) and len(vals) == possible_cpus()
        assert sum(int.from_bytes(v, "little") for v in vals) == 10
        m[0] = _u64(3)
        assert m[0] == [_u64(3)] * possible_cpus()


def test_packet_program_gets_data(bpf_obj, backend):
    with bpfarena.load(bpf_obj("load_packet.bpf.c"), backend=backend) as obj:
        prog = obj.programs["pkt_len"]
        assert prog.run().retval == 64  # the default minimal frame
        res = prog.run(data=bytes(range(100)), repeat=5)
        assert res.retval == 100
        assert res.data_out == bytes(range(100))


def test_user_vm_start_places_the_arena(bpf_obj, backend):
    want = 0x7F1200000000
    with bpfarena.load(bpf_obj("load_arena.bpf.c"), backend=backend, user_vm_start=want) as obj:
        assert obj.arena.user_vm_start == want
        assert obj.arena.globals.address("a_value") == want
        assert obj.programs["read_globals"].run().retval == 42
        assert obj.programs["alloc"].run().retval == 0
        assert obj.globals["alloc_addr"] >> 32 == want >> 32


def test_rodata_knob_set_before_load(bpf_obj, backend):
    """`const volatile` knobs are fixed at load (rodata is frozen): set them on the spec first."""
    spec = ObjectSpec.from_file(bpf_obj("load_globals.bpf.c"))
    spec.set_global("ro_factor", 10)
    spec.set_global("negative", -1)
    with bpfarena.load(spec, backend=backend) as obj:
        assert obj.globals["ro_factor"] == 10
        assert obj.globals["negative"] == -1
        assert obj.programs["compute"].run().retval == 6 * 10 + 1
    with pytest.raises(KeyError):
        spec.set_global("no_such_variable", 1)


# --- pinning (LIBBPF_PIN_BY_NAME) and the arena address ------------------------------------------

PINNED_SRC = r"""
#include "bpfarena.h"
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, 1 /* LIBBPF_PIN_BY_NAME */);
} SHARED SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} private SEC(".maps");
%s
SEC("syscall")
int bump(void *ctx)
{
	__u32 k = 0;
	__u64 one = 1, *v = bpf_map_lookup_elem(&SHARED, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&SHARED, &k, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&private, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&private, &k, &one, BPF_NOEXIST);
	%s
	return 0;
}
char _license[] SEC("license") = "GPL";
"""


def _pinned_obj(bpf_obj, tmp_path, name: str, arena: str = "", body: str = "") -> object:
    src = tmp_path / f"{name}.bpf.c"
    src.write_text((PINNED_SRC % (arena, body)).replace("SHARED", name))
    return bpf_obj(src)


def _map_id(m) -> int:
    return _sys.map_info(m.fd).id


@pytest.fixture
def pin_root():
    from bpfarena.kernel.arena import ensure_bpffs

    ensure_bpffs()
    root = f"/sys/fs/bpf/bpfarena-test-{os.getpid()}"
    os.makedirs(root, exist_ok=True)
    yield root
    for f in os.listdir(root):
        os.unlink(os.path.join(root, f))
    os.rmdir(root)


def test_pinned_map_is_shared_between_loads(bpf_obj, kernel, tmp_path, pin_root):
    obj = _pinned_obj(bpf_obj, tmp_path, "shared")
    with bpfarena.load(obj, backend=kernel, pin_root=pin_root) as a:
        assert os.listdir(pin_root) == ["shared"]  # only the pinned-by-name map
        a.programs["bump"].run()
        a.maps["shared"][5] = 77
        with bpfarena.load(obj, backend=kernel, pin_root=pin_root) as b:
            b.programs["bump"].run()
            assert _map_id(b.maps["shared"]) == _map_id(a.maps["shared"])
            assert _map_id(b.maps["private"]) != _map_id(a.maps["private"])
            assert int.from_bytes(a.maps["shared"][0], "little") == 2
            assert int.from_bytes(a.maps["private"][0], "little") == 1
            assert int.from_bytes(b.maps["shared"][5], "little") == 77
    assert os.listdir(pin_root) == ["shared"]  # the pin outlives the collections
    with bpfarena.load(obj, backend=kernel, pin_root=pin_root) as c:
        assert int.from_bytes(c.maps["shared"][0], "little") == 2  # contents kept


def test_pinned_map_default_root_is_sys_fs_bpf(bpf_obj, kernel, tmp_path):
    name = f"bpfa_pin_{os.getpid()}"
    path = os.path.join("/sys/fs/bpf", name)
    obj = _pinned_obj(bpf_obj, tmp_path, name)
    try:
        with bpfarena.load(obj, backend=kernel) as a:
            assert os.path.exists(path)
            with _sys.obj_get(path) as fd:
                assert _sys.map_info(fd).id == _map_id(a.maps[name])
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_incompatible_pinned_map_is_refused(bpf_obj, kernel, tmp_path, pin_root):
    obj = _pinned_obj(bpf_obj, tmp_path, "shared")
    with _sys.map_create(1, 4, 8, 32) as fd:  # a hash map, but 32 entries instead of 16
        _sys.obj_pin(fd, os.path.join(pin_root, "shared"))
    before = _fds()
    with pytest.raises(MapError, match=r"max_entries 0x20 \(object: 0x10\)") as ei:
        bpfarena.load(obj, backend=kernel, pin_root=pin_root)
    assert ei.value.errno == errno.EINVAL
    assert _fds() == before


def test_failed_load_unpins_what_it_pinned(bpf_obj, kernel, tmp_path, pin_root):
    # the NULL dereference makes the verifier refuse the program after the map was pinned
    obj = _pinned_obj(bpf_obj, tmp_path, "shared",
                      body="return *(volatile __u64 *)bpf_map_lookup_elem(&shared, &k);")
    with pytest.raises(VerifierError):
        bpfarena.load(obj, backend=kernel, pin_root=pin_root)
    assert os.listdir(pin_root) == []


def test_pinned_arena_is_shared_between_loads(bpf_obj, kernel, tmp_path, pin_root):
    arena = r"""
struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8);
	__uint(pinning, 1);
} arena SEC(".maps");
"""
    obj = _pinned_obj(bpf_obj, tmp_path, "shared", arena=arena)
    with bpfarena.load(obj, backend=kernel, pin_root=pin_root) as a:
        p = a.arena.alloc_pages(1)
        a.arena.write(p, b"pinned")
        assert sorted(os.listdir(pin_root)) == ["arena", "shared"]
        with bpfarena.load(obj, backend=kernel, pin_root=pin_root) as b:
            assert b.arena.map_id == a.arena.map_id
            assert b.arena.read(p, 6) == b"pinned"
            assert b.arena.resident_pages() == 1


def test_user_vm_start_must_match_map_extra(bpf_obj, backend, tmp_path):
    at = 0x7E0000000000
    src = tmp_path / "fixed.bpf.c"
    src.write_text(f"""#include "bpfarena.h"
BPFARENA_MAP(arena, 4, {at:#x}ull);
SEC("syscall") int noop(void *ctx) {{ return 0; }}
char _license[] SEC("license") = "GPL";
""")
    obj = bpf_obj(src)
    with bpfarena.load(obj, backend=backend, user_vm_start=at) as c:  # the same address is fine
        assert c.arena.user_vm_start == at
    before = _fds()
    with pytest.raises(ArenaError, match="map_extra") as ei:
        bpfarena.load(obj, backend=backend, user_vm_start=at + (1 << 20))
    assert ei.value.errno == errno.EINVAL
    assert _fds() == before


@pytest.mark.parametrize("code", [0xFF, 0x00])
def test_unknown_opcode_names_its_instruction(kernel, code):
    # "unknown opcode XX" comes from a pass that prints no index; 0x00 also fills the second
    # slot of every ld_imm64, which must not be taken for the culprit
    import struct

    slot = struct.Struct("<BBhi")
    insns = (slot.pack(0x18, 1, 0, 5) + slot.pack(0, 0, 0, 0)  # ld_imm64 r1, 5
             + slot.pack(0xB7, 0, 0, 0) + slot.pack(code, 0, 0, 0) + slot.pack(0x95, 0, 0, 0))
    with pytest.raises(VerifierError) as ei:
        _sys.prog_load(31, insns, "GPL", name="badop", prog_flags=16)
    assert f"unknown opcode {code:02x}" in ei.value.log
    assert ei.value.insn_index == 3


def test_unknown_opcode_in_an_object_names_its_instruction(bpf_obj, kernel, tmp_path):
    import io

    from elftools.elf.elffile import ELFFile

    data = bytearray(bpf_obj("load_globals.bpf.c").read_bytes())
    spec = ObjectSpec.from_bytes(bytes(data))
    ps = spec.programs["compute"]
    sec = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(ps.section)
    data[sec["sh_offset"] + 8 * 2] = 0xFF
    p = tmp_path / "badop.o"
    p.write_bytes(bytes(data))
    with pytest.raises(VerifierError) as ei:
        bpfarena.load(p, backend=kernel)
    assert ei.value.program == "compute" and ei.value.insn_index == 2
