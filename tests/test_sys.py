"""_sys: the bpf(2) layer, checked against the kernel itself and against the UAPI header."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import subprocess

import pytest

from bpfarena import _sys
from bpfarena._sys import attr, mem
from bpfarena.errors import MapError, SyscallError, VerifierError

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_SYSCALL = 31

EXIT = struct.pack("<BBhi", 0x95, 0, 0, 0)


def mov64_imm(dst: int, imm: int) -> bytes:
    return struct.pack("<BBhi", 0xB7, dst, 0, imm)


def k(i: int) -> bytes:
    return i.to_bytes(4, "little")


def v(i: int) -> bytes:
    return i.to_bytes(8, "little")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- layouts against include/uapi/linux/bpf.h ----------------------------------------------------

# (struct in the header, ctypes class, fields). Only fields the installed header knows are checked.
_LAYOUTS = [
    ("union bpf_attr", attr.MapCreateAttr,
     ["map_type", "key_size", "value_size", "max_entries", "map_flags", "inner_map_fd",
      "numa_node", "map_name", "map_ifindex", "btf_fd", "btf_key_type_id", "btf_value_type_id",
      "btf_vmlinux_value_type_id", "map_extra"]),
    ("union bpf_attr", attr.ProgLoadAttr,
     ["prog_type", "insn_cnt", "insns", "license", "log_level", "log_size", "log_buf",
      "kern_version", "prog_flags", "prog_name", "prog_ifindex", "expected_attach_type",
      "prog_btf_fd", "func_info_rec_size", "func_info", "func_info_cnt", "line_info_rec_size",
      "line_info", "line_info_cnt", "attach_btf_id", "attach_prog_fd", "core_relo_cnt",
      "fd_array", "core_relos", "core_relo_rec_size"]),
    ("union bpf_attr", attr.TestRunAttr,
     ["test.prog_fd", "test.retval", "test.data_size_in", "test.data_size_out", "test.data_in",
      "test.data_out", "test.repeat", "test.duration", "test.ctx_size_in", "test.ctx_size_out",
      "test.ctx_in", "test.ctx_out", "test.flags", "test.cpu", "test.batch_size"]),
    ("union bpf_attr", attr.MapBatchAttr,
     ["batch.in_batch", "batch.out_batch", "batch.keys", "batch.values", "batch.count",
      "batch.map_fd", "batch.elem_flags", "batch.flags"]),
    ("union bpf_attr", attr.ObjPinAttr, ["pathname", "bpf_fd", "file_flags"]),
    ("union bpf_attr", attr.InfoAttr, ["info.bpf_fd", "info.info_len", "info.info"]),
    ("union bpf_attr", attr.BtfLoadAttr,
     ["btf", "btf_log_buf", "btf_size", "btf_log_size", "btf_log_level"]),
    ("struct bpf_map_info", attr.MapInfo,
     ["type", "id", "key_size", "value_size", "max_entries", "map_flags", "name", "ifindex",
      "btf_vmlinux_value_type_id", "netns_dev", "netns_ino", "btf_id", "btf_key_type_id",
      "btf_value_type_id", "map_extra"]),
    ("struct bpf_prog_info", attr.ProgInfo,
     ["type", "id", "tag", "jited_prog_len", "xlated_prog_len", "jited_prog_insns",
      "xlated_prog_insns", "load_time", "created_by_uid", "nr_map_ids", "map_ids", "name",
      "ifindex", "netns_dev", "netns_ino", "nr_jited_ksyms", "btf_id", "func_info",
      "nr_func_info", "nr_line_info", "line_info", "run_time_ns", "run_cnt",
      "recursion_misses", "verified_insns", "attach_btf_obj_id", "attach_btf_id"]),
]


def test_attr_layouts_match_uapi_header(tmp_path):
    cc = shutil.which("clang-19") or shutil.which("cc")
    assert cc, "a C compiler is needed to read the UAPI header"
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include <linux/bpf.h>',
             'int main(void) {']
    expect = []
    for ctype, cls, fields in _LAYOUTS:
        for f in fields:
            py_name = f.split(".")[-1]
            expect.append(getattr(cls, py_name).offset)
            lines.append(f'printf("%zu\\n", offsetof({ctype}, {f}));')
    lines.append("return 0; }")
    src = tmp_path / "off.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "off"
    subprocess.run([cc, "-o", str(exe), str(src)], check=True, capture_output=True)
    got = [int(x) for x in subprocess.run([str(exe)], check=True, capture_output=True,
                                          text=True).stdout.split()]
    assert got == expect


# --- maps ------------------------------------------------------------------------------------------

@pytest.fixture
def hash_map(kernel):
    with _sys.map_create(BPF_MAP_TYPE_HASH, 4, 8, 64, name="t_hash") as fd:
        yield fd


def test_hash_map_update_lookup_delete(hash_map):
    _sys.map_update_elem(hash_map, k(7), v(70))
    assert _sys.map_lookup_elem(hash_map, k(7), 8) == v(70)
    _sys.map_update_elem(hash_map, k(7), v(71), flags=2)  # BPF_EXIST
    assert _sys.map_lookup_elem(hash_map, k(7), 8) == v(71)
    with pytest.raises(MapError) as ei:
        _sys.map_update_elem(hash_map, k(7), v(1), flags=1)  # BPF_NOEXIST
    assert ei.value.errno == errno.EEXIST
    _sys.map_delete_elem(hash_map, k(7))
    with pytest.raises(MapError) as ei:
        _sys.map_lookup_elem(hash_map, k(7), 8)
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(MapError) as ei:
        _sys.map_delete_elem(hash_map, k(7))
    assert ei.value.errno == errno.ENOENT


def test_get_next_key_walks_every_key(hash_map):
    want = {k(i) for i in range(10)}
    for key in want:
        _sys.map_update_elem(hash_map, key, v(1))
    seen = []
    key = None
    while True:
        try:
            key = _sys.map_get_next_key(hash_map, key, 4)
        except MapError as e:
            assert e.errno == errno.ENOENT
            break
        seen.append(key)
    assert sorted(seen) == sorted(want)


def test_lookup_batch_and_delete_batch(hash_map):
    for i in range(20):
        _sys.map_update_elem(hash_map, k(i), v(i * 3))
    got: dict[bytes, bytes] = {}
    token = None
    while True:
        r = _sys.map_lookup_batch(hash_map, 4, 8, 7, token)
        got.update(zip(r.keys, r.values, strict=True))
        if r.done:
            break
        token = r.out_batch
    assert got == {k(i): v(i * 3) for i in range(20)}
    r = _sys.map_lookup_batch(hash_map, 4, 8, 64, None, delete=True)
    assert len(r.keys) == 20 and r.done
    with pytest.raises(MapError):
        _sys.map_get_next_key(hash_map, None, 4)


def test_freeze_makes_map_read_only(kernel):
    with _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2) as fd:
        _sys.map_update_elem(fd, k(0), v(5))
        _sys.map_freeze(fd)
        with pytest.raises(MapError) as ei:
            _sys.map_update_elem(fd, k(0), v(6))
        assert ei.value.errno == errno.EPERM
        assert _sys.map_lookup_elem(fd, k(0), 8) == v(5)


def test_map_create_error_carries_errno(kernel):
    with pytest.raises(SyscallError) as ei:
        _sys.map_create(BPF_MAP_TYPE_HASH, 0, 8, 4)  # hash key size 0
    assert ei.value.errno == errno.EINVAL


def test_map_info_and_get_fd_by_id(kernel):
    with _sys.map_create(BPF_MAP_TYPE_HASH, 4, 16, 33, name="t_info") as fd:
        info = _sys.map_info(fd)
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (1, 4, 16, 33)
        assert info.name == b"t_info"
        with _sys.map_get_fd_by_id(info.id) as fd2:
            assert fd2.fileno() != fd.fileno()
            assert _sys.map_info(fd2).id == info.id
        ids = []
        nid = 0
        while (nid := _sys.map_get_next_id(nid)) is not None:
            ids.append(nid)
        assert info.id in ids


def test_pin_and_get(kernel, tmp_path):
    from bpfarena.kernel.arena import ensure_bpffs
    d = ensure_bpffs()
    path = os.path.join(d, f"bpfarena_test_sys_{os.getpid()}")
    with _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1) as fd:
        _sys.map_update_elem(fd, k(0), v(42))
        _sys.obj_pin(fd, path)
    try:
        with _sys.obj_get(path) as fd2:
            assert _sys.map_lookup_elem(fd2, k(0), 8) == v(42)
    finally:
        os.unlink(path)


# --- programs --------------------------------------------------------------------------------------

def test_prog_load_and_test_run(kernel):
    insns = mov64_imm(0, 42) + EXIT
    with _sys.prog_load(BPF_PROG_TYPE_SYSCALL, insns, name="ret42", prog_flags=16) as fd:
        r = _sys.prog_test_run(fd)
        assert r.retval == 42
        info = _sys.prog_info(fd)
        assert info.type == BPF_PROG_TYPE_SYSCALL and info.name == b"ret42"
        assert info.xlated_prog_len == 16
        with _sys.prog_get_fd_by_id(info.id) as fd2:
            assert _sys.prog_test_run(fd2).retval == 42


def test_syscall_prog_refuses_repeat(kernel):
    with _sys.prog_load(BPF_PROG_TYPE_SYSCALL, mov64_imm(0, 1) + EXIT, prog_flags=16) as fd:
        with pytest.raises(SyscallError) as ei:
            _sys.prog_test_run(fd, repeat=5)
        assert ei.value.errno == errno.EINVAL


def test_syscall_prog_ctx_round_trip(kernel):
    # *(u64 *)(r1 + 0) = 0x1234 ; r0 = *(u32 *)(r1 + 8) ; exit
    insns = (struct.pack("<BBhi", 0x7A, 0x01, 0, 0x1234)
             + struct.pack("<BBhi", 0x61, 0x10, 8, 0) + EXIT)
    with _sys.prog_load(BPF_PROG_TYPE_SYSCALL, insns, prog_flags=16) as fd:
        ctx = bytearray(16)
        ctx[8:12] = k(99)
        assert _sys.prog_test_run_ctx_inout(fd, ctx) == 99
        assert ctx[:8] == v(0x1234)


def test_rejected_program_gives_verifier_log(kernel):
    insns = EXIT  # r0 is never set
    with pytest.raises(VerifierError) as ei:
        _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, insns, name="bad_r0")
    e = ei.value
    assert e.errno == errno.EACCES
    assert "R0 !read_ok" in e.log
    assert e.program == "bad_r0"
    assert "R0 !read_ok" in str(e)


def test_verifier_log_on_success(kernel):
    with _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, mov64_imm(0, 0) + EXIT,
                        log_level=2) as fd:
        assert "processed 2 insns" in fd.log


def test_btf_load_rejects_garbage(kernel):
    with pytest.raises(SyscallError) as ei:
        _sys.btf_load(b"\x00" * 32)
    assert ei.value.errno == errno.EINVAL


def test_enable_stats(kernel):
    with _sys.enable_stats(0) as fd:
        assert fd.fileno() >= 0


# --- fd ownership ----------------------------------------------------------------------------------

def test_fd_closes_exactly_once(kernel):
    before = open_fds()
    fd = _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1)
    assert open_fds() == before + 1
    n = fd.fileno()
    fd.close()
    fd.close()
    assert fd.closed and open_fds() == before
    with pytest.raises(SyscallError):
        fd.fileno()
    # the number may be reused by someone else: a second close must not touch it
    other = os.open("/dev/null", os.O_RDONLY)
    try:
        assert other == n
        fd.close()
        os.fstat(other)
    finally:
        os.close(other)


def test_fd_leak_free_in_loop(kernel):
    before = open_fds()
    for _ in range(50):
        with _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1):
            pass
        try:
            _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 0)
        except SyscallError:
            pass
    assert open_fds() == before


# --- memory helpers --------------------------------------------------------------------------------

def test_mmap_fixed_noreplace_and_memview():
    n = 4 * 4096
    a = mem.mmap(None, n, mem.PROT_READ | mem.PROT_WRITE, mem.MAP_PRIVATE | mem.MAP_ANONYMOUS)
    try:
        mv = mem.memview(a, n)
        mv[5] = 7
        assert mem.copy_out(a + 5, 1) == b"\x07"
        with pytest.raises(SyscallError) as ei:
            mem.mmap(a, 4096, mem.PROT_READ, mem.MAP_PRIVATE | mem.MAP_ANONYMOUS
                     | mem.MAP_FIXED_NOREPLACE)
        assert ei.value.errno == errno.EEXIST
        assert mem.mincore(a, n)[0] & 1 and not mem.mincore(a, n)[3] & 1
        mv.release()
    finally:
        mem.munmap(a, n)


def test_process_vm_rw_reports_efault_instead_of_crashing():
    n = 2 * 4096
    a = mem.mmap(None, n, mem.PROT_READ | mem.PROT_WRITE, mem.MAP_PRIVATE | mem.MAP_ANONYMOUS)
    mem.munmap(a + 4096, 4096)  # second page is now a hole
    try:
        assert mem.process_vm_writev(a + 10, b"abc") == (3, 0)
        assert mem.process_vm_readv(a + 10, 3) == (b"abc", 0)
        data, err = mem.process_vm_readv(a + 4000, 200)
        assert err == errno.EFAULT and len(data) == 96
        written, err = mem.process_vm_writev(a + 4090, b"x" * 20)
        assert err == errno.EFAULT and written == 6
    finally:
        mem.munmap(a, 4096)


def test_memfd_punch_hole_reads_zero():
    fd = _sys.Fd(mem.memfd_create("t"))
    with fd:
        os.ftruncate(fd.fileno(), 3 * 4096)
        os.pwrite(fd.fileno(), b"z" * (3 * 4096), 0)
        mem.punch_hole(fd.fileno(), 4096, 4096)
        data = os.pread(fd.fileno(), 3 * 4096, 0)
        assert data[:4096] == b"z" * 4096 and data[4096:8192] == bytes(4096)
        assert data[8192:] == b"z" * 4096


def test_bpf_rejects_unknown_command():
    with pytest.raises(SyscallError) as ei:
        _sys.bpf(9999, attr.GetIdAttr())
    assert ei.value.errno == errno.EINVAL
    assert ctypes.sizeof(attr.MapCreateAttr) >= 72


def test_arena_fault_load_gives_zero_and_stream_read(kernel):
    """A BPF load from an unallocated arena page gives 0; after alloc it sees the user's bytes."""
    import bpfarena
    from bpfarena.isa.asm import R0, R1, R2, Assembler
    from bpfarena.kernel.progs import load_syscall_prog

    with bpfarena.Arena(pages=4, backend="kernel") as a:
        asm = Assembler()
        asm.ld_map_fd(R1, a.fd)
        asm.ld_map_value(R2, a.fd, 4096)
        asm.cast_kern(R2, R2)
        asm.ldx("dw", R0, R2, 0)
        asm.exit_()
        with load_syscall_prog(asm, "fault_read") as prog:
            assert _sys.prog_test_run(prog).retval == 0
            assert isinstance(_sys.prog_stream_read(prog, 2), bytes)
            q = a.alloc_pages(1, addr=a.user_vm_start + 4096)
            a.write_u64(q, 77)
            assert _sys.prog_test_run(prog).retval == 77


def test_btf_load_accepts_valid_btf(kernel):
    types = struct.pack("<IIII", 1, 1 << 24, 4, 32)  # INT "int", 4 bytes, 32 bits
    strs = b"\0int\0"
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
    with _sys.btf_load(hdr + types + strs) as fd:
        assert fd.fileno() >= 0
    bad = struct.pack("<IIII", 1, 1 << 24, 4, 64)  # 64 bits in 4 bytes: rejected, with a log
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(bad), len(bad), len(strs))
    with pytest.raises(SyscallError) as ei:
        _sys.btf_load(hdr + bad + strs)
    assert ei.value.errno == errno.EINVAL
    assert ei.value.log


def test_test_run_with_packet_data_and_repeat(kernel):
    with _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, mov64_imm(0, 7) + EXIT) as fd:
        pkt = bytes(range(64))
        r = _sys.prog_test_run(fd, data_in=pkt, data_out_size=128, repeat=10)
        assert r.retval == 7
        # the kernel rebuilds the Ethernet header of its test skb; the payload comes back as is
        assert len(r.data_out) == len(pkt) and r.data_out[14:] == pkt[14:]
