"""The kernel back end's loader: ObjectSpec -> live Collection (BTF, maps, arena, programs).

Order matters and mirrors libbpf: the object's BTF is fixed up and loaded first (maps and programs
refer to it), then maps are created (data maps get their initial value, `.rodata` is frozen), then
the arena is created and mapped and its globals image copied in, then each program's instructions
are patched (maps, globals, arena, kfuncs, __ksym, CO-RE) and loaded with the verifier log captured.
Everything created is closed again if any step fails (and maps it pinned are unpinned).

Pinning, as libbpf does it: a map defined with `__uint(pinning, LIBBPF_PIN_BY_NAME)` lives at
`<pin_root>/<map name>` (pin_root defaults to /sys/fs/bpf). If a map is pinned there already it is
reused, provided type, key and value size, max_entries, flags and map_extra all match (MapError
naming the difference otherwise); if not, the map is created and pinned there. A reused map keeps
its contents, and the pin outlives the Collection (unpin it with os.unlink).

Arena address: an arena whose definition sets map_extra sits exactly there. `user_vm_start=`
chooses the address only for arenas with map_extra 0; passing a different one for an arena that
fixes its map_extra is refused with ArenaError(EINVAL) instead of being silently ignored.

Arena globals placement: `arena_placement="start"` (the default) puts `.addr_space.1` at offset 0
of the arena, as libbpf up to 1.6 does and as libbpf 1.7 still does on kernels (like 6.18) whose
verifier refuses ld_imm64 map-value offsets past 512 MiB. `"end"` puts them in the last pages, as
libbpf 1.7 does where the kernel allows it (it keeps page 0, whose low 32 bits may be 0, free of
objects); it is accepted only when `arena_globals_at_end()` says the kernel allows it. `"auto"` takes
the end where possible and the start elsewhere, like libbpf 1.7.
"""

from __future__ import annotations

import errno
import os
import re
from functools import lru_cache
from typing import Any

from .. import _sys
from ..arena.layout import PAGE_SIZE, choose_start
from ..collection import Collection, GlobalVariables
from ..errors import ArenaError, BPFError, MapError, NotSupportedError, ObjectError, SyscallError
from ..obj.maps import LIBBPF_PIN_BY_NAME
from ..obj.spec import MapSpec, ObjectSpec, ProgramSpec
from . import btfload
from .diagnose import diagnose
from .kfuncs import vmlinux_btf
from .maps import KernelMap
from .programs import BPF_F_SLEEPABLE, PROG_LSM, PROG_TRACING, KernelProgram, load_program
from .relocate import Insns, apply_relocations, encode_insns, patch_core, resize_load

BPF_F_RDONLY_PROG = 1 << 7
BPF_F_NUMA_NODE = 1 << 2
MAP_ARRAY = 2
PIN_ROOT = "/sys/fs/bpf"  # libbpf's default pin_root_path
# expected_attach_type -> how the vmlinux BTF target is named (for attach_btf_id)
_ATTACH_PREFIX = {23: ("typedef", "btf_trace_"), 24: ("func", ""), 25: ("func", ""),
                  26: ("func", ""), 27: ("func", "bpf_lsm_"), 28: ("func", "bpf_iter_")}


def load_collection(spec: ObjectSpec, *, log_level: int = 0, log_size: int = 1 << 20,
                    arena_placement: str = "start", user_vm_start: int | None = None,
                    pin_root: str | os.PathLike[str] = PIN_ROOT, **_ignored: Any) -> Collection:
    """Load `spec` into the kernel. See the module docstring for arena placement and pinning.

    `log_level` > 0 keeps the verifier log of every program (`program.log`); a refused program
    is always reloaded with a log for its VerifierError. `user_vm_start` puts the arena at that
    address when the object's map_extra is 0; an object with a non-zero map_extra fixes the
    address, and a different `user_vm_start` raises ArenaError (EINVAL). `pin_root` is where
    LIBBPF_PIN_BY_NAME maps are pinned and looked for. Options meant for other back ends are
    ignored, so one call works for all of them.
    """
    if arena_placement not in ("start", "end", "auto"):
        raise ValueError(f"arena_placement must be 'start', 'end' or 'auto', "
                         f"not {arena_placement!r}")
    if spec.arena is not None:
        unavailable = diagnose()  # say why up front, rather than as whichever call fails first
        if unavailable is not None:
            raise unavailable.error()
    coll = Collection(backend="kernel", btf=spec.btf, spec=spec,
                      globals=GlobalVariables(spec.btf))
    pins = _Pins(os.fspath(pin_root))
    try:
        _load(spec, coll, log_level, log_size, arena_placement, user_vm_start, pins)
    except BaseException:
        coll.close()
        pins.undo()
        raise
    return coll


def _load(spec: ObjectSpec, coll: Collection, log_level: int, log_size: int,
          placement: str, user_vm_start: int | None, pins: _Pins) -> None:
    closers = coll._closers
    raw = _fixed_btf(spec)
    # .BTF.ext line info names strings by content: make sure each is in the string table
    line_blobs = {name: _line_info(raw, p) for name, p in spec.programs.items()} if raw else {}
    btf_fd = 0
    if raw is not None:
        btf = _load_btf(raw.to_bytes(), spec)
        closers.append(btf.close)
        btf_fd = btf.fileno()

    fds: dict[str, int] = {}
    for name, ms in spec.maps.items():
        if ms.is_arena:
            continue
        dsec = raw.find(btfload.K_DATASEC, ms.section) if raw is not None and ms.is_data else 0
        m = pins.map(ms, lambda ms=ms, dsec=dsec: _create_map(ms, btf_fd, dsec or 0))
        closers.append(m.close)
        coll.maps[name] = m
        fds[name] = m.fd
        for vname, v in ms.variables.items():
            if vname not in coll.globals:
                coll.globals._add(vname, m, v.offset, v.size, v.type_id)

    data_off = 0
    if spec.arena is not None:
        arena, afd = _create_arena(spec.arena, user_vm_start, pins)
        closers.append(arena.close)
        coll.arena = arena
        coll.maps[spec.arena.name] = _arena_map_view(arena, spec.arena)
        fds[spec.arena.name] = afd
        data_off = _place_globals(spec, arena, placement)

    externs = list(spec.externs)
    for name, ps in spec.programs.items():
        insns = Insns(encode_insns(ps.insns))
        apply_relocations(insns, ps.relocations, map_fd=lambda t, n=name: _fd(fds, t, n),
                          arena_data_off=data_off, kfunc_id=_kfunc_id, ksym_id=_ksym_id,
                          extern_index=lambda t: externs.index(t) if t in externs else 0,
                          program=name)
        if ps.core_relos:
            _apply_core(spec, ps, insns)
        fd = _load_prog(ps, bytes(insns.raw), btf_fd, line_blobs.get(name, b""), log_level,
                        log_size)
        p = KernelProgram(fd, name, ps.section, ps.prog_type, fd.log)
        closers.append(p.close)
        coll.programs[name] = p


# --- BTF -----------------------------------------------------------------------------------------
def _raw_btf_bytes(spec: ObjectSpec) -> bytes | None:
    """The exact .BTF bytes clang wrote (type ids must stay put)."""
    if spec.btf_raw:
        return bytes(spec.btf_raw)
    if spec.btf is None:
        return None
    return bytes(spec.btf.to_bytes())


def _fixed_btf(spec: ObjectSpec) -> btfload.RawBTF | None:
    data = _raw_btf_bytes(spec)
    if data is None:
        return None
    raw = btfload.RawBTF(data)
    sections: dict[str, tuple[int, dict[str, int]]] = {}
    for ms in spec.maps.values():
        if ms.is_data:
            sections[ms.section] = (len(ms.data or b""),
                                    {n: v.offset for n, v in ms.variables.items()})
    if spec.arena_vars or spec.arena_image:
        sections[".addr_space.1"] = (len(spec.arena_image),
                                     {n: v.offset for n, v in spec.arena_vars.items()})
    for sec, size in spec.section_sizes.items():
        known = sections.get(sec, (size, {}))
        sections[sec] = (known[0], {**spec.symbol_values, **known[1]})
    btfload.fixup(raw, sections)
    return raw


def _load_btf(data: bytes, spec: ObjectSpec) -> _sys.Fd:
    try:
        return _sys.btf_load(data, retry_with_log=False)
    except SyscallError as first:
        if first.errno == errno.EPERM:
            raise NotSupportedError("BPF_BTF_LOAD", "permission denied: needs CAP_BPF",
                                    errno=first.errno) from None
    try:
        _sys.btf_load(data, log_level=1, log_size=1 << 22, retry_with_log=False).close()
    except SyscallError as e:
        log = getattr(e, "log", "")
        err = ObjectError(f"the kernel rejected the object's BTF "
                          f"({errno.errorcode.get(e.errno, e.errno)}):\n"
                          + "\n".join(log.strip().splitlines()[-15:]), section=".BTF",
                          path=spec.path)
        err.log = log
        err.errno = e.errno
        raise err from None
    raise ObjectError("the kernel rejected the object's BTF without a log, then accepted it",
                      section=".BTF", path=spec.path)


def _line_info(raw: btfload.RawBTF, ps: ProgramSpec) -> bytes:
    out, last = bytearray(), -1
    for li in sorted(ps.line_info, key=lambda x: x.insn_index):
        if li.insn_index == last:
            continue
        last = li.insn_index
        out += (li.insn_index.to_bytes(4, "little") + _str_off(raw, li.file).to_bytes(4, "little")
                + _str_off(raw, li.line).to_bytes(4, "little")
                + ((li.line_num << 10) | (li.column & 0x3FF)).to_bytes(4, "little"))
    return bytes(out)


def _str_off(raw: btfload.RawBTF, s: str) -> int:
    if not s:
        return 0
    key = s.encode() + b"\0"
    pos = raw.strings.find(key)
    while pos > 0 and raw.strings[pos - 1] != 0:  # a suffix is fine, but prefer a whole string
        nxt = raw.strings.find(key, pos + 1)
        if nxt < 0:
            break
        pos = nxt
    return pos if pos >= 0 else raw.add_string(s)


# --- maps ----------------------------------------------------------------------------------------
_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")


def kernel_map_name(name: str) -> str:
    """What the kernel accepts as a map/program name: 15 chars of [A-Za-z0-9_.]."""
    return _NAME_OK.sub("_", name)[:15]


def _create_map(ms: MapSpec, btf_fd: int, datasec_id: int = 0) -> KernelMap:
    """MAP_CREATE one map; a global-data map is a one-element ARRAY whose BTF value type is its
    DATASEC (as libbpf does: the verifier then knows e.g. where a bpf_spin_lock sits)."""
    flags, mtype = ms.flags, ms.type
    key_size, value_size, max_entries = ms.key_size, ms.value_size, ms.max_entries
    key_id, value_id = ms.key_type_id, ms.value_type_id
    if ms.is_data:
        mtype, key_size, max_entries = MAP_ARRAY, 4, 1
        value_size = len(ms.data or b"")
        if value_size == 0:
            raise ObjectError("global-data section is empty", section=ms.section)
        if ms.readonly:
            flags |= BPF_F_RDONLY_PROG
        key_id, value_id = 0, datasec_id
    inner = _create_map(ms.inner, btf_fd) if ms.inner is not None else None
    try:
        kw = dict(flags=flags, name=kernel_map_name(ms.name), map_extra=ms.map_extra,
                  numa_node=ms.numa_node if flags & BPF_F_NUMA_NODE else 0,
                  inner_map_fd=inner.fd if inner is not None else 0)
        try:
            fd = _sys.map_create(mtype, key_size, value_size, max_entries,
                                 btf_fd=btf_fd if (key_id or value_id) else 0,
                                 btf_key_type_id=key_id, btf_value_type_id=value_id, **kw)
        except SyscallError as e:
            if not (btf_fd and (key_id or value_id)) or e.errno not in (errno.EINVAL,
                                                                        errno.ENOTSUP):
                raise
            # the kernel could not use the BTF types for this map: create it without them
            fd = _sys.map_create(mtype, key_size, value_size, max_entries, **kw)
    except SyscallError as e:
        if e.errno == errno.EPERM:
            raise NotSupportedError(f"creating map {ms.name!r}", "permission denied: needs "
                                    "CAP_BPF", errno=e.errno) from None
        raise SyscallError(f"creating map {ms.name!r} (type {mtype}, key {key_size}, value "
                           f"{value_size}, max_entries {max_entries}, flags 0x{flags:x})",
                           e.errno) from None
    finally:
        if inner is not None:
            inner.close()
    m = KernelMap(fd, ms.name, mtype, key_size, value_size, max_entries, flags)
    if ms.is_data:
        try:
            m.update(0, (ms.data or b"").ljust(value_size, b"\0"))
            if ms.readonly:
                _sys.map_freeze(fd)
        except BPFError as e:
            m.close()
            raise SyscallError(f"initialising global-data map {ms.name!r}",
                               getattr(e, "errno", None)) from None
    return m


def _fd(fds: dict[str, int], target: str, program: str) -> int:
    try:
        return fds[target]
    except KeyError:
        raise ObjectError(f"program {program!r} refers to map {target!r}, which the object "
                          f"does not define", symbol=target) from None


# --- arena ---------------------------------------------------------------------------------------
def _create_arena(ms: MapSpec, user_vm_start: int | None = None,
                  pins: _Pins | None = None) -> tuple[Any, int]:
    """Create (or reuse, when pinned by name) and map the object's arena through KernelArena,
    which owns fd and mapping."""
    from .arena import KernelArena
    start = choose_start(ms.map_extra, user_vm_start, ms.name)

    def create() -> Any:
        return KernelArena(pages=ms.max_entries, user_vm_start=start, flags=ms.flags, name=kernel_map_name(ms.name))

    arena = pins.arena(ms, create) if pins is not None else create()
    if user_vm_start and arena.user_vm_start != user_vm_start:
        arena.close()
        raise ArenaError(f"user_vm_start=0x{user_vm_start:x} conflicts with the pinned arena "
                         f"{ms.name!r}, mapped at 0x{arena.user_vm_start:x}", errno.EINVAL,
                         user_vm_start)
    return arena, arena.fd


# --- pinning -------------------------------------------------------------------------------------
class _Pins:
    """LIBBPF_PIN_BY_NAME maps of one load: reuse what is pinned, pin what is new, and unpin
    the new ones again if the load fails."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.created: list[str] = []
        self._ready = False

    def path(self, ms: MapSpec) -> str:
        if not self._ready:
            if os.path.normpath(self.root) == PIN_ROOT:
                from .arena import ensure_bpffs
                ensure_bpffs(PIN_ROOT)
            self._ready = True
        return os.path.join(self.root, ms.name)

    def map(self, ms: MapSpec, create: Any) -> KernelMap:
        return self._reuse_or_create(ms, create, lambda fd: KernelMap(
            fd, ms.name, ms.type, ms.key_size, ms.value_size, ms.max_entries, ms.flags))

    def arena(self, ms: MapSpec, create: Any) -> Any:
        from .arena import KernelArena
        return self._reuse_or_create(
            ms, create, lambda fd: KernelArena.from_fd(fd, name=kernel_map_name(ms.name)))

    def _reuse_or_create(self, ms: MapSpec, create: Any, adopt: Any) -> Any:
        """libbpf's pin-by-name: reuse a compatible pinned map, else create and pin it. A pin
        that appears or vanishes between the two steps (another loader) is retried once."""
        if ms.pinning != LIBBPF_PIN_BY_NAME:
            return create()
        path = self.path(ms)
        for _ in range(2):
            fd = self._get(ms, path)
            if fd is not None:
                return adopt(fd)
            obj = create()
            if self._pin(obj.fd, ms, path, obj.close):
                return obj
        raise MapError(f"map {ms.name!r}: {path} keeps appearing and disappearing",
                       errno.EBUSY)

    def _get(self, ms: MapSpec, path: str) -> _sys.Fd | None:
        """The map pinned at `path` if it is compatible with `ms`; None if nothing is pinned."""
        try:
            fd = _sys.obj_get(path)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return None
            raise MapError(f"map {ms.name!r}: cannot open the object pinned at {path}",
                           e.errno) from None
        try:
            info = _sys.map_info(fd)
        except SyscallError as e:
            fd.close()
            raise MapError(f"map {ms.name!r}: {path} is pinned but is not a map", e.errno) \
                from None
        want = {"type": ms.type, "key_size": ms.key_size, "value_size": ms.value_size,
                "max_entries": ms.max_entries, "map_flags": ms.flags,
                "map_extra": ms.map_extra}
        diff = [f"{k} {getattr(info, k):#x} (object: {v:#x})" for k, v in want.items()
                if getattr(info, k) != v]
        if diff:
            fd.close()
            raise MapError(f"map {ms.name!r}: cannot reuse the map pinned at {path}, its "
                           f"parameters differ: {', '.join(diff)}", errno.EINVAL)
        return fd

    def _pin(self, fd: int, ms: MapSpec, path: str, close: Any) -> bool:
        """Pin a new map; False (and the map closed) if someone pinned one there meanwhile."""
        try:
            _sys.obj_pin(fd, path)
        except SyscallError as e:
            close()
            if e.errno == errno.EEXIST:
                return False
            raise MapError(f"map {ms.name!r}: cannot pin it at {path} (the directory must be "
                           "on a bpf filesystem)", e.errno) from None
        self.created.append(path)
        return True

    def undo(self) -> None:
        for path in self.created:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.created.clear()


def _arena_map_view(arena: Any, ms: MapSpec) -> KernelMap:
    """The arena as a map entry (for `obj.maps[name]`); its Fd stays owned by the arena."""
    m = KernelMap(arena._fd, ms.name, ms.type, 0, 0, ms.max_entries, ms.flags)
    m.close = lambda: None  # type: ignore[method-assign]
    return m


@lru_cache(maxsize=1)
def arena_globals_at_end() -> bool:
    """Whether this kernel accepts ld_imm64 map-value offsets past 512 MiB (what libbpf 1.7
    probes before putting arena globals at the end); the probe lives in `features`."""
    from .features import probe

    return bool(probe("arena_globals_at_end"))


def _place_globals(spec: ObjectSpec, arena: Any, placement: str) -> int:
    image = spec.arena_image
    need = (len(image) + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    if need > arena.size:
        raise ObjectError(f"arena globals ({len(image)} bytes) do not fit in the arena "
                          f"({arena.max_pages} pages)", section=".addr_space.1")
    at_end = placement == "end" or (placement == "auto" and arena_globals_at_end())
    if placement == "end" and not arena_globals_at_end():
        raise NotSupportedError("arena globals at the end of the arena",
                                "this kernel refuses ld_imm64 offsets past 512 MiB",
                                min_kernel="7.0")
    off = arena.size - need if at_end and need else 0
    if image:
        arena.write(arena.user_vm_start + off, image)
    from ..arena.base import ArenaGlobals
    arena._btf = spec.btf
    arena._globals = ArenaGlobals(
        arena, {n: (v.offset + off, v.size, v.type_id) for n, v in spec.arena_vars.items()},
        spec.btf)
    arena.globals_offset = off
    return off


# --- kfuncs, ksyms, CO-RE ------------------------------------------------------------------------
def _vmlinux_id(name: str, kind: int) -> int | None:
    """The first vmlinux BTF type of `kind` named `name`, or None."""
    try:
        return vmlinux_btf().find(name, kind)
    except KeyError:
        return None


def _kfunc_id(name: str) -> int | None:
    return _vmlinux_id(name, btfload.K_FUNC)


def _ksym_id(name: str) -> int | None:
    return _vmlinux_id(name, btfload.K_VAR)


def _apply_core(spec: ObjectSpec, ps: ProgramSpec, insns: Insns) -> None:
    """Resolve each CO-RE record against vmlinux BTF and patch its instruction as libbpf does:
    the target value replaces the compiler's; an unmatched access poisons the instruction (it
    fails only if reached); a load whose field changed size gets the target's size."""
    try:
        from ..btf.core import resolve_relo
    except ImportError as e:
        raise NotSupportedError("CO-RE relocations", f"bpfarena.btf.core is missing: {e}") \
            from None
    if spec.btf is None:
        raise ObjectError(f"program {ps.name!r} has CO-RE relocations but the object has no BTF",
                          section=ps.section)
    target = vmlinux_btf()
    for cr in ps.core_relos:
        what = f"CO-RE kind {cr.kind} access {cr.access!r} on local type {cr.type_id}"
        try:
            res = resolve_relo(spec.btf, cr.type_id, cr.access, cr.kind, target)
        except BPFError as e:
            raise ObjectError(f"{what} in program {ps.name!r}: {e}", insn_index=cr.insn_index,
                              section=ps.section) from None
        value = None if res.poison else res.target_value
        patch_core(insns, cr.insn_index, value, f"{what} in program {ps.name!r}")
        if value is not None and cr.kind == 0 and res.target_field_size != res.local_field_size:
            resize_load(insns, cr.insn_index, res.target_field_size, what)


# --- programs ------------------------------------------------------------------------------------
def _load_prog(ps: ProgramSpec, insns: bytes, btf_fd: int, line_info: bytes, log_level: int,
               log_size: int) -> _sys.ProgFd:
    func_info = b"".join(fi.insn_index.to_bytes(4, "little") + fi.type_id.to_bytes(4, "little")
                         for fi in sorted(ps.func_info, key=lambda f: f.insn_index))
    attach_btf_id = 0
    if ps.prog_type in (PROG_TRACING, PROG_LSM) and ps.attach_to:
        attach_btf_id = _attach_id(ps)
    return load_program(
        kernel_map_name(ps.name), ps.prog_type, insns, ps.license or "GPL", log_level=log_level,
        log_size=log_size, expected_attach_type=ps.expected_attach_type,
        prog_flags=BPF_F_SLEEPABLE if ps.sleepable else 0, prog_btf_fd=btf_fd,
        func_info=func_info if btf_fd else b"", func_info_rec_size=8,
        line_info=line_info if btf_fd else b"", line_info_rec_size=16, attach_btf_id=attach_btf_id)


def _attach_id(ps: ProgramSpec) -> int:
    kind, prefix = _ATTACH_PREFIX.get(ps.expected_attach_type, ("func", ""))
    k = btfload.K_TYPEDEF if kind == "typedef" else btfload.K_FUNC
    tid = _vmlinux_id(prefix + ps.attach_to, k) if ps.attach_to else None
    if tid is None:
        raise NotSupportedError(f"attaching program {ps.name!r} to {ps.attach_to!r}",
                                f"no {kind} {prefix}{ps.attach_to} in vmlinux BTF")
    return tid
