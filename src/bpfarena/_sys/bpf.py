"""bpf(2): the one choke point, and one thin wrapper per command.

No policy: each wrapper packs its attr, makes the call and turns a failure into a typed error with
the kernel's errno (`SyscallError`, `MapError` for element operations, `VerifierError` for a refused
program). Fd arguments may be ints or anything with `fileno()`.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import MapError, SyscallError, VerifierError
from .attr import (
    BtfLoadAttr,
    Cmd,
    EnableStatsAttr,
    GetIdAttr,
    InfoAttr,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    MapInfo,
    ObjPinAttr,
    ProgInfo,
    ProgLoadAttr,
    StreamReadAttr,
    TestRunAttr,
)
from .fd import Fd
from .libc import SYS_BPF, libc

_CMD_NAMES = {v: k for k, v in vars(Cmd).items() if k.isupper()}

ENOTSUPP = 524  # the kernel-internal "not supported" that some commands leak to user space

# prog_load log buffer: start here, grow to what the kernel says it needs (log_true_size)
DEFAULT_LOG_SIZE = 1 << 20
MAX_LOG_SIZE = (1 << 30) - 1  # the kernel caps log_size below 2^30 (UINT_MAX >> 2)


class HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = int | HasFileno


def _fd(x: FdLike) -> int:
    return x if isinstance(x, int) else x.fileno()


def _addr(buf: ctypes.Array | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _cbuf(data: bytes | bytearray | memoryview | None, size: int | None = None) -> ctypes.Array | None:
    """A ctypes buffer holding `data` (or `size` zero bytes) that stays alive while referenced."""
    if data is None and not size:
        return None
    data = bytes(data or b"")
    n = max(len(data), size or 0)
    buf = (ctypes.c_char * max(n, 1))()
    ctypes.memmove(buf, data, len(data))
    return buf


def bpf(cmd: int, attr: ctypes.Structure, size: int | None = None) -> int:
    """Call bpf(cmd, &attr, sizeof attr); return the result or raise SyscallError with errno."""
    if SYS_BPF < 0:  # pragma: no cover
        raise SyscallError(f"bpf(2) syscall number unknown on {os.uname().machine}")
    n = ctypes.sizeof(attr) if size is None else size
    ret = libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), ctypes.byref(attr),
                       ctypes.c_uint(n))
    if ret < 0:
        err = ctypes.get_errno()
        raise SyscallError(f"bpf({_CMD_NAMES.get(cmd, cmd)})", err)
    return ret


def _bpf_map(cmd: int, attr: ctypes.Structure) -> int:
    try:
        return bpf(cmd, attr)
    except SyscallError as e:
        raise MapError(f"bpf({_CMD_NAMES.get(cmd, cmd)})", e.errno) from None


# --- maps ----------------------------------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               flags: int = 0, name: str | bytes | None = None, map_extra: int = 0,
               numa_node: int = 0, inner_map_fd: int = 0, map_ifindex: int = 0,
               btf_fd: int = 0, btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               btf_vmlinux_value_type_id: int = 0, value_type_btf_obj_fd: int = 0) -> Fd:
    """BPF_MAP_CREATE; returns the new map's Fd."""
    a = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                      max_entries=max_entries, map_flags=flags, inner_map_fd=inner_map_fd,
                      numa_node=numa_node, map_name=_name16(name) if name else b"",
                      map_ifindex=map_ifindex, btf_fd=btf_fd, btf_key_type_id=btf_key_type_id,
                      btf_value_type_id=btf_value_type_id,
                      btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
                      map_extra=map_extra & ((1 << 64) - 1),
                      value_type_btf_obj_fd=value_type_btf_obj_fd)
    return Fd(bpf(Cmd.MAP_CREATE, a))


def _name16(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else bytes(name)
    return raw[:15]  # BPF_OBJ_NAME_LEN 16, NUL-terminated


def _elem(cmd: int, fd: FdLike, key: bytes | None, value: bytes | None = None,
          out_size: int = 0, flags: int = 0) -> bytes:
    """One element command: `key` (and `value`) in, or `out_size` bytes out (returned)."""
    kb = _cbuf(key)
    vb = _cbuf(value) if value is not None else _cbuf(None, out_size)
    _bpf_map(cmd, MapElemAttr(map_fd=_fd(fd), key=_addr(kb), value=_addr(vb), flags=flags))
    return vb.raw[:out_size] if out_size and vb is not None else b""


def map_lookup_elem(fd: FdLike, key: bytes, value_size: int, flags: int = 0) -> bytes:
    """BPF_MAP_LOOKUP_ELEM; raises MapError (ENOENT when the key is absent)."""
    return _elem(Cmd.MAP_LOOKUP_ELEM, fd, key, out_size=value_size, flags=flags)


def map_lookup_and_delete_elem(fd: FdLike, key: bytes | None, value_size: int,
                               flags: int = 0) -> bytes:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM (queues and stacks take no key)."""
    return _elem(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, fd, key, out_size=value_size, flags=flags)


def map_update_elem(fd: FdLike, key: bytes | None, value: bytes, flags: int = 0) -> None:
    """BPF_MAP_UPDATE_ELEM with BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2) or BPF_F_LOCK (4)."""
    _elem(Cmd.MAP_UPDATE_ELEM, fd, key, value, flags=flags)


def map_delete_elem(fd: FdLike, key: bytes) -> None:
    """BPF_MAP_DELETE_ELEM; raises MapError (ENOENT when the key is absent)."""
    _elem(Cmd.MAP_DELETE_ELEM, fd, key)


def map_get_next_key(fd: FdLike, key: bytes | None, key_size: int) -> bytes:
    """BPF_MAP_GET_NEXT_KEY; `key=None` gives the first key; raises MapError ENOENT at the end."""
    return _elem(Cmd.MAP_GET_NEXT_KEY, fd, key, out_size=key_size)


@dataclass
class BatchResult:
    """One BPF_MAP_LOOKUP_BATCH step: the pairs returned, the token to continue, and whether done."""

    keys: list[bytes]
    values: list[bytes]
    out_batch: bytes
    done: bool


def map_lookup_batch(fd: FdLike, key_size: int, value_size: int, count: int,
                     in_batch: bytes | None = None, *, delete: bool = False,
                     elem_flags: int = 0, flags: int = 0) -> BatchResult:
    """BPF_MAP_LOOKUP_BATCH (or ..._AND_DELETE_BATCH): up to `count` entries from `in_batch` on.

    ENOENT from the kernel means "no more": returned as done=True with whatever was filled.
    Note: per-CPU maps need value_size rounded to 8 times the CPU count; that is the caller's job.
    """
    tok = max(key_size, 8)
    ib = _cbuf(in_batch, tok) if in_batch is not None else None
    ob = _cbuf(None, tok)
    kb = _cbuf(None, key_size * max(count, 1))
    vb = _cbuf(None, value_size * max(count, 1))
    a = MapBatchAttr(in_batch=_addr(ib), out_batch=_addr(ob), keys=_addr(kb), values=_addr(vb),
                     count=count, map_fd=_fd(fd), elem_flags=elem_flags, flags=flags)
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
    done = False
    try:
        bpf(cmd, a)
    except SyscallError as e:
        if e.errno != 2:  # ENOENT: end of map, partial result
            raise MapError(f"bpf({_CMD_NAMES[cmd]})", e.errno) from None
        done = True
    n = a.count
    kraw, vraw = kb.raw, vb.raw
    keys = [kraw[i * key_size:(i + 1) * key_size] for i in range(n)]
    values = [vraw[i * value_size:(i + 1) * value_size] for i in range(n)]
    return BatchResult(keys, values, ob.raw[:tok], done)


def map_freeze(fd: FdLike) -> None:
    """BPF_MAP_FREEZE: from now on user space may no longer write the map."""
    _elem(Cmd.MAP_FREEZE, fd, None)


# --- programs ------------------------------------------------------------------------------------

class ProgFd(Fd):
    """A program Fd that also keeps the verifier log of its load (empty unless log_level > 0)."""

    __slots__ = ("log", "log_true_size")

    def __init__(self, fd: int, log: str = "", log_true_size: int = 0) -> None:
        super().__init__(fd)
        self.log = log
        self.log_true_size = log_true_size


def prog_load(prog_type: int, insns: bytes | Iterable[Any], license: str = "GPL", *,
              name: str | None = None,
              log_level: int = 0, log_size: int = DEFAULT_LOG_SIZE, kern_version: int = 0,
              prog_flags: int = 0, expected_attach_type: int = 0, prog_btf_fd: int = 0,
              func_info: bytes = b"", func_info_rec_size: int = 0, func_info_cnt: int | None = None,
              line_info: bytes = b"", line_info_rec_size: int = 0, line_info_cnt: int | None = None,
              attach_btf_id: int = 0, attach_prog_fd: int = 0,
              fd_array: list[int] | None = None, prog_ifindex: int = 0,
              retry_with_log: bool = True) -> ProgFd:
    """BPF_PROG_LOAD; raises VerifierError with the verifier log on refusal.

    `insns` is the raw instruction bytes (8 per slot), or objects with `encode() -> bytes`
    (isa.Instruction). If the load fails without a log, it is retried once with log_level 1 so
    the error carries the verifier's reason (unless `retry_with_log=False`: callers with their
    own retry policy); a log that did not fit (ENOSPC) is retried with the size the kernel
    reports (log_true_size).
    """
    if not isinstance(insns, bytes | bytearray | memoryview):
        insns = b"".join(i.encode() for i in insns)
    insns = bytes(insns)
    if len(insns) % 8:
        raise SyscallError(f"program {name!r}: instruction bytes not a multiple of 8 ({len(insns)})")
    ib = _cbuf(insns)
    lic = ctypes.create_string_buffer(license.encode())
    fib = _cbuf(func_info) if func_info else None
    lib = _cbuf(line_info) if line_info else None
    fda = (ctypes.c_int32 * len(fd_array))(*fd_array) if fd_array else None
    label = name or "?"
    fixed: dict[str, Any] = dict(
        prog_type=prog_type, insn_cnt=len(insns) // 8, insns=_addr(ib),
        license=ctypes.addressof(lic), kern_version=kern_version, prog_flags=prog_flags,
        prog_name=_name16(name) if name else b"", prog_ifindex=prog_ifindex,
        expected_attach_type=expected_attach_type, prog_btf_fd=prog_btf_fd,
        attach_btf_id=attach_btf_id, attach_prog_fd=attach_prog_fd, fd_array=_addr(fda))
    for kind, blob, buf, rec_size, cnt in (
            ("func_info", func_info, fib, func_info_rec_size, func_info_cnt),
            ("line_info", line_info, lib, line_info_rec_size, line_info_cnt)):
        if buf is not None:
            fixed.update({kind: _addr(buf), f"{kind}_rec_size": rec_size,
                          f"{kind}_cnt": cnt if cnt is not None else len(blob) // max(rec_size, 1)})

    def attempt(level: int, size: int) -> tuple[int, int, str, int]:
        logb = (ctypes.c_char * size)() if level else None
        a = ProgLoadAttr(log_level=level, log_size=size if level else 0, log_buf=_addr(logb),
                         **fixed)
        try:
            fd = bpf(Cmd.PROG_LOAD, a)
            err = 0
        except SyscallError as e:
            fd, err = -1, e.errno or 0
        log = logb.value.decode(errors="replace") if logb is not None else ""
        return fd, err, log, a.log_true_size

    level, size = log_level, log_size
    fd, err, log, true_size = attempt(level, size)
    if fd < 0 and err == 28 and level and true_size > size:  # ENOSPC: log too small
        size = min(true_size + 1, MAX_LOG_SIZE)
        fd, err, log, true_size = attempt(level, size)
    if fd < 0 and not level and retry_with_log and err not in (1, 9, 14):  # EPERM EBADF EFAULT
        fd2, err2, log, true_size = attempt(1, size)
        if fd2 >= 0:  # loads with a log but not without: keep it
            fd, err = fd2, 0
        elif err2 == 28 and true_size > size:
            fd2, err2, log, true_size = attempt(1, min(true_size + 1, MAX_LOG_SIZE))
            if fd2 >= 0:
                fd, err = fd2, 0
    if fd < 0:
        raise VerifierError(label, err, log, failing_insn(log, insns))
    return ProgFd(fd, log, true_size)


_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\)", re.M)
# the opcode check runs before the verifier prints any instruction, and names only the opcode
_UNKNOWN_OPCODE = re.compile(r"^unknown opcode ([0-9a-f]{2})$", re.M)
_LD_IMM64 = 0x18


def failing_insn(log: str, insns: bytes | None = None) -> int | None:
    """Index of the instruction the verifier refused, if the log (with `insns`) tells.

    Usually the last instruction the verifier printed before it gave up. "unknown opcode XX"
    comes from a pre-pass that prints no index: it stops at the first slot (second halves of
    ld_imm64 skipped) holding an opcode it does not know, so that is the first slot with XX.
    """
    unknown = _UNKNOWN_OPCODE.findall(log)
    if unknown and insns:
        code = int(unknown[-1], 16)
        i, n = 0, len(insns) // 8
        while i < n:
            op = insns[8 * i]
            if op == code:
                return i
            i += 2 if op == _LD_IMM64 else 1
    idx = None
    for m in _INSN_LINE.finditer(log):
        idx = int(m.group(1))
    return idx


@dataclass
class TestRunResult:
    """What BPF_PROG_TEST_RUN gave back."""

    __test__ = False

    retval: int
    duration_ns: int
    data_out: bytes
    ctx_out: bytes


def prog_test_run(fd: FdLike, *, data_in: bytes | None = None, data_out_size: int = 0,
                  ctx_in: bytes | bytearray | None = None, ctx_out_size: int = 0,
                  repeat: int = 0, flags: int = 0, cpu: int = 0,
                  batch_size: int = 0) -> TestRunResult:
    """BPF_PROG_TEST_RUN. For syscall programs the kernel wants repeat = 0 and no data."""
    di = _cbuf(data_in) if data_in else None
    do = _cbuf(None, data_out_size) if data_out_size else None
    ci = _cbuf(ctx_in) if ctx_in else None
    co = _cbuf(None, ctx_out_size) if ctx_out_size else None
    a = TestRunAttr(prog_fd=_fd(fd), data_size_in=len(data_in or b""),
                    data_size_out=data_out_size, data_in=_addr(di), data_out=_addr(do),
                    repeat=repeat, ctx_size_in=len(ctx_in or b""), ctx_size_out=ctx_out_size,
                    ctx_in=_addr(ci), ctx_out=_addr(co), flags=flags, cpu=cpu,
                    batch_size=batch_size)
    bpf(Cmd.PROG_TEST_RUN, a)
    data_out = do.raw[:a.data_size_out] if do is not None else b""
    ctx_out = co.raw[:a.ctx_size_out] if co is not None else b""
    return TestRunResult(a.retval, a.duration, data_out, ctx_out)


def prog_test_run_ctx_inout(fd: FdLike, ctx: bytearray) -> int:
    """Run a syscall program whose ctx is user memory: the program's writes land in `ctx`.

    BPF_PROG_TYPE_SYSCALL copies ctx_in in and back out to the same user buffer; returns retval.
    """
    buf = (ctypes.c_char * max(len(ctx), 1)).from_buffer(ctx) if ctx else None
    a = TestRunAttr(prog_fd=_fd(fd), ctx_size_in=len(ctx), ctx_in=_addr(buf))
    bpf(Cmd.PROG_TEST_RUN, a)
    return a.retval


def prog_stream_read(prog_fd: FdLike, stream_id: int = 2, size: int = 1 << 16) -> bytes:
    """BPF_PROG_STREAM_READ_BY_FD (6.17+): drain up to `size` bytes of stdout (1) / stderr (2)."""
    buf = (ctypes.c_char * size)()
    a = StreamReadAttr(stream_buf=ctypes.addressof(buf), stream_buf_len=size,
                       stream_id=stream_id, prog_fd=_fd(prog_fd))
    n = bpf(Cmd.PROG_STREAM_READ_BY_FD, a)
    return buf.raw[:n]


# --- BTF -----------------------------------------------------------------------------------------

def btf_load(data: bytes, *, log_level: int = 0, log_size: int = DEFAULT_LOG_SIZE,
             retry_with_log: bool = True) -> Fd:
    """BPF_BTF_LOAD; on refusal the SyscallError carries `.log` with the kernel's reason."""
    db = _cbuf(data)

    def attempt(level: int) -> tuple[int, int, str]:
        logb = (ctypes.c_char * log_size)() if level else None
        a = BtfLoadAttr(btf=_addr(db), btf_log_buf=_addr(logb), btf_size=len(data),
                        btf_log_size=log_size if level else 0, btf_log_level=level)
        try:
            return bpf(Cmd.BTF_LOAD, a), 0, ""
        except SyscallError as e:
            return -1, e.errno or 0, (logb.value.decode(errors="replace") if logb else "")

    fd, err, log = attempt(log_level)
    if fd < 0 and not log_level and retry_with_log and err != 1:
        fd2, _err2, log = attempt(1)
        if fd2 >= 0:
            fd = fd2
    if fd < 0:
        tail = "\n".join(log.strip().splitlines()[-10:])
        exc = SyscallError("bpf(BTF_LOAD) refused the BTF" + (f" ({tail})" if tail else ""), err)
        exc.log = log  # type: ignore[attr-defined]
        raise exc
    return Fd(fd)


# --- objects: pin, get, ids, info ----------------------------------------------------------------

def obj_pin(fd: FdLike, path: str | os.PathLike) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = ObjPinAttr(pathname=ctypes.addressof(p), bpf_fd=_fd(fd))
    bpf(Cmd.OBJ_PIN, a)


def obj_get(path: str | os.PathLike, file_flags: int = 0) -> Fd:
    """BPF_OBJ_GET: an Fd for a pinned object (file_flags BPF_F_RDONLY 8 / BPF_F_WRONLY 16)."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = ObjPinAttr(pathname=ctypes.addressof(p), file_flags=file_flags)
    return Fd(bpf(Cmd.OBJ_GET, a))


def map_get_fd_by_id(map_id: int, open_flags: int = 0) -> Fd:
    return Fd(bpf(Cmd.MAP_GET_FD_BY_ID, GetIdAttr(id=map_id, open_flags=open_flags)))


def prog_get_fd_by_id(prog_id: int, open_flags: int = 0) -> Fd:
    return Fd(bpf(Cmd.PROG_GET_FD_BY_ID, GetIdAttr(id=prog_id, open_flags=open_flags)))


def btf_get_fd_by_id(btf_id: int) -> Fd:
    return Fd(bpf(Cmd.BTF_GET_FD_BY_ID, GetIdAttr(id=btf_id)))


def _next_id(cmd: int, start: int) -> int | None:
    a = GetIdAttr(id=start)
    try:
        bpf(cmd, a)
    except SyscallError as e:
        if e.errno == 2:  # ENOENT: no more
            return None
        raise
    return a.next_id


def map_get_next_id(start: int = 0) -> int | None:
    """The next map id after `start`, or None at the end."""
    return _next_id(Cmd.MAP_GET_NEXT_ID, start)


def prog_get_next_id(start: int = 0) -> int | None:
    return _next_id(Cmd.PROG_GET_NEXT_ID, start)


def obj_get_info_by_fd(fd: FdLike, info: ctypes.Structure) -> int:
    """BPF_OBJ_GET_INFO_BY_FD into `info` (filled in place); returns the length the kernel wrote."""
    a = InfoAttr(bpf_fd=_fd(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, a)
    return a.info_len


def map_info(fd: FdLike) -> MapInfo:
    info = MapInfo()
    obj_get_info_by_fd(fd, info)
    return info


def prog_info(fd: FdLike) -> ProgInfo:
    info = ProgInfo()
    obj_get_info_by_fd(fd, info)
    return info


def enable_stats(stats_type: int = 0) -> Fd:
    """BPF_ENABLE_STATS (BPF_STATS_RUN_TIME = 0): stats stay on while the Fd is open."""
    return Fd(bpf(Cmd.ENABLE_STATS, EnableStatsAttr(type=stats_type)))
