"""bpf(2) commands the object loader needs: BTF_LOAD, MAP_*, PROG_LOAD, PROG_TEST_RUN.

Self-contained on purpose (the loader must not wait for the rest of `_sys`): each command packs its
`union bpf_attr` member at the kernel's UAPI offsets into a zeroed buffer, calls bpf(2) and returns
the result or raises SyscallError with the errno. No policy lives here.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

from ..errors import SyscallError

# enum bpf_cmd
MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
PROG_LOAD = 5
PROG_TEST_RUN = 10
BTF_LOAD = 18
MAP_FREEZE = 22
MAP_LOOKUP_BATCH = 24

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "s390x": 351, "ppc64le": 361}
ATTR_SIZE = 160  # larger than every member used; the kernel checks the tail is zero

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(SyscallError):
    """A bpf(2) command failed; `.cmd` names it."""

    def __init__(self, cmd: str, err: int) -> None:
        self.cmd = cmd
        super().__init__(f"bpf({cmd}) failed", err)


def _nr() -> int:
    try:
        return _NR_BPF[platform.machine()]
    except KeyError:
        from ..errors import NotSupportedError
        raise NotSupportedError("bpf(2)", f"unknown syscall number on {platform.machine()}") \
            from None


def bpf(cmd: int, attr: ctypes.Array, name: str) -> int:
    """Call bpf(cmd, attr, sizeof attr); raise BpfError on failure, else return the result."""
    rc = _libc.syscall(ctypes.c_long(_nr()), ctypes.c_long(cmd), attr,
                       ctypes.c_uint(len(attr)))
    if rc < 0:
        raise BpfError(name, ctypes.get_errno())
    return int(rc)


def _attr() -> ctypes.Array:
    return ctypes.create_string_buffer(ATTR_SIZE)


def addr(buf: ctypes.Array | None) -> int:
    return 0 if buf is None else ctypes.addressof(buf)


def _put(attr: ctypes.Array, fmt: str, off: int, *vals: int) -> None:
    struct.pack_into("<" + fmt, attr, off, *vals)


def _get(attr: ctypes.Array, fmt: str, off: int) -> int:
    return struct.unpack_from("<" + fmt, attr, off)[0]


def cbuf(data: bytes, size: int | None = None) -> ctypes.Array:
    """A C buffer holding `data` (padded with zeros to `size`)."""
    size = len(data) if size is None else size
    b = ctypes.create_string_buffer(max(size, 1))
    ctypes.memmove(b, data, min(len(data), size))
    return b


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# --- BTF ---------------------------------------------------------------------------------------
def btf_load(data: bytes, log_level: int = 0, log_size: int = 0) -> tuple[int, str]:
    """BPF_BTF_LOAD; returns (fd, log). On failure BpfError carries `.log`."""
    a = _attr()
    blob = cbuf(data)
    log = ctypes.create_string_buffer(log_size) if log_size else None
    _put(a, "QQIII", 0, addr(blob), addr(log), len(data), log_size, log_level if log_size else 0)
    try:
        fd = bpf(BTF_LOAD, a, "BTF_LOAD")
    except BpfError as e:
        e.log = log.value.decode(errors="replace") if log else ""
        raise
    return fd, (log.value.decode(errors="replace") if log else "")


# --- maps --------------------------------------------------------------------------------------
def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: str = "", numa_node: int = 0, btf_fd: int = 0, key_type_id: int = 0,
               value_type_id: int = 0, map_extra: int = 0, inner_map_fd: int = 0) -> int:
    a = _attr()
    _put(a, "IIIIIII", 0, map_type, key_size, value_size, max_entries, flags, inner_map_fd,
         numa_node)
    nm = name.encode()[:15]
    a[28:28 + len(nm)] = nm
    _put(a, "III", 48, btf_fd, key_type_id, value_type_id)
    _put(a, "Q", 64, map_extra)
    return bpf(MAP_CREATE, a, "MAP_CREATE")


def _elem(cmd: int, name: str, fd: int, key: ctypes.Array | None, val: ctypes.Array | None,
          flags: int = 0) -> int:
    a = _attr()
    _put(a, "IIQQQ", 0, fd, 0, addr(key), addr(val), flags)
    return bpf(cmd, a, name)


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k, v = cbuf(key), ctypes.create_string_buffer(max(value_size, 1))
    try:
        _elem(MAP_LOOKUP_ELEM, "MAP_LOOKUP_ELEM", fd, k, v)
    except BpfError as e:
        if e.errno == 2:  # ENOENT
            return None
        raise
    return v.raw[:value_size]


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    _elem(MAP_UPDATE_ELEM, "MAP_UPDATE_ELEM", fd, cbuf(key), cbuf(value), flags)


def map_delete(fd: int, key: bytes) -> bool:
    try:
        _elem(MAP_DELETE_ELEM, "MAP_DELETE_ELEM", fd, cbuf(key), None)
    except BpfError as e:
        if e.errno == 2:
            return False
        raise
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    nk = ctypes.create_string_buffer(max(key_size, 1))
    try:
        _elem(MAP_GET_NEXT_KEY, "MAP_GET_NEXT_KEY", fd, cbuf(key) if key is not None else None,
              nk)
    except BpfError as e:
        if e.errno == 2:
            return None
        raise
    return nk.raw[:key_size]


def map_lookup_batch(fd: int, key_size: int, value_size: int, count: int,
                     in_batch: bytes | None, batch_size: int) -> tuple[list[bytes], list[bytes],
                                                                        bytes | None]:
    """One BPF_MAP_LOOKUP_BATCH step: (keys, values, next token or None when done)."""
    a = _attr()
    ks = ctypes.create_string_buffer(max(key_size * count, 1))
    vs = ctypes.create_string_buffer(max(value_size * count, 1))
    inb = cbuf(in_batch, batch_size) if in_batch is not None else None
    outb = ctypes.create_string_buffer(batch_size)
    _put(a, "QQQQII", 0, addr(inb), addr(outb), addr(ks), addr(vs), count, fd)
    done = False
    try:
        bpf(MAP_LOOKUP_BATCH, a, "MAP_LOOKUP_BATCH")
    except BpfError as e:
        if e.errno != 2:  # ENOENT: the last batch (possibly partial)
            raise
        done = True
    n = _get(a, "I", 32)
    keys = [ks.raw[i * key_size:(i + 1) * key_size] for i in range(n)]
    vals = [vs.raw[i * value_size:(i + 1) * value_size] for i in range(n)]
    return keys, vals, None if done else outb.raw


def map_freeze(fd: int) -> None:
    a = _attr()
    _put(a, "I", 0, fd)
    bpf(MAP_FREEZE, a, "MAP_FREEZE")


# --- programs ----------------------------------------------------------------------------------
def prog_load(prog_type: int, insns: bytes, license: str, *, name: str = "",
              expected_attach_type: int = 0, prog_flags: int = 0, log_level: int = 0,
              log_size: int = 0, prog_btf_fd: int = 0, func_info: bytes = b"",
              line_info: bytes = b"", attach_btf_id: int = 0,
              kern_version: int = 0) -> tuple[int, str]:
    """BPF_PROG_LOAD; returns (fd, log). On failure BpfError carries `.log`."""
    a = _attr()
    ib, lic = cbuf(insns), cbuf(license.encode() + b"\0")
    log = ctypes.create_string_buffer(log_size) if log_size and log_level else None
    fi = cbuf(func_info) if func_info else None
    li = cbuf(line_info) if line_info else None
    _put(a, "IIQQIIQII", 0, prog_type, len(insns) // 8, addr(ib), addr(lic),
         log_level if log else 0, log_size if log else 0, addr(log), kern_version, prog_flags)
    nm = name.encode()[:15]
    a[48:48 + len(nm)] = nm
    _put(a, "I", 68, expected_attach_type)
    if prog_btf_fd:
        _put(a, "IIQI", 72, prog_btf_fd, 8 if fi else 0, addr(fi), len(func_info) // 8)
        _put(a, "IQI", 92, 16 if li else 0, addr(li), len(line_info) // 16)
    _put(a, "I", 108, attach_btf_id)
    try:
        fd = bpf(PROG_LOAD, a, "PROG_LOAD")
    except BpfError as e:
        e.log = log.value.decode(errors="replace") if log else ""
        raise
    return fd, (log.value.decode(errors="replace") if log else "")


def prog_test_run(fd: int, *, ctx: bytes = b"", data: bytes = b"", repeat: int = 0,
                  ctx_out_size: int = 0, data_out_size: int = 0,
                  flags: int = 0) -> tuple[int, int, bytes, bytes, bytes]:
    """BPF_PROG_TEST_RUN: (retval, duration_ns, ctx_out, data_out, ctx_in after the run).

    The last item matters for BPF_PROG_TYPE_SYSCALL, whose context is copied back into ctx_in.
    """
    a = _attr()
    din = cbuf(data) if data else None
    dout = ctypes.create_string_buffer(data_out_size) if data_out_size else None
    cin = cbuf(ctx) if ctx else None
    cout = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None
    _put(a, "IIIIQQII", 0, fd, 0, len(data), data_out_size, addr(din), addr(dout), repeat, 0)
    _put(a, "IIQQI", 40, len(ctx), ctx_out_size, addr(cin), addr(cout), flags)
    bpf(PROG_TEST_RUN, a, "PROG_TEST_RUN")
    retval, dur = _get(a, "I", 4), _get(a, "I", 36)
    dlen, clen = _get(a, "I", 12), _get(a, "I", 44)
    return (retval, dur, cout.raw[:min(clen, ctx_out_size)] if cout else b"",
            dout.raw[:min(dlen, data_out_size)] if dout else b"",
            cin.raw[:len(ctx)] if cin else b"")
