"""Load an ObjectSpec into the VM: maps, the arena, relocated and translated programs.

The arena goes at the arena map's map_extra when set (a different `user_vm_start=` is refused,
as on the kernel), else at `user_vm_start` when given (e.g. where the kernel put the same object,
so pointer values compare equal), else where the VM chooses.
Arena globals are copied to offset 0 of the arena (start placement, as libbpf does on this
kernel: ARENA_FACTS.md section 12); the copy faults their pages in, as libbpf's does.
"""

from __future__ import annotations

import struct
import time
from functools import lru_cache
from typing import Any, NamedTuple

from ..arena.base import ArenaGlobals
from ..arena.layout import choose_start
from ..collection import Collection, GlobalVariables, Program, RunResult, default_packet
from ..errors import InvalidInstruction, NotSupportedError, ObjectError, VMError
from ..obj.spec import ObjectSpec, ProgramSpec, RelocKind
from . import translate as tr
from .arena import VMArena
from .arenaflow import analyze
from .check import check_program
from .ctxflow import scan_ctx
from .helpers import HELPERS, KFUNCS, NEEDS_FP, Runtime
from .interp import DEFAULT_BUDGET, Machine
from .maps import VMArenaMap, VMMap
from .memory import FUNC_HANDLE_BASE, M64, MAP_HANDLE_BASE, Memory

BPF_PROG_TYPE_SYSCALL = 31
U32 = 0xFFFFFFFF
PAGE = 4096


def _helper_name(hid: int) -> str:
    try:
        from ..isa.helpers import HELPER_NAMES
        return "bpf_" + HELPER_NAMES[hid]
    except Exception:
        return f"helper #{hid}"


class VMProgram(Program):
    """A program loaded into the VM."""

    backend = "vm"

    def __init__(self, spec: ProgramSpec, machine: Machine, runtime: Runtime,
                 budget: int) -> None:
        self.name = spec.name
        self.section = spec.section
        self.prog_type = spec.prog_type
        self.spec = spec
        self.machine = machine
        self.runtime = runtime
        self.budget = budget
        self.closed = False
        self.max_ctx = machine.unit.max_ctx

    @property
    def source(self) -> str:
        """The Python source the program was translated into (for debugging)."""
        return self.machine.source

    def run(self, ctx: bytes = b"", repeat: int = 1, data: bytes = b"",
            budget: int | None = None) -> RunResult:
        """Run once per `repeat` (at least once); retval is u32, as BPF_PROG_TEST_RUN gives."""
        if self.closed:
            raise VMError("the collection is closed", program=self.name)
        ctx = bytes(ctx)
        if self.prog_type == BPF_PROG_TYPE_SYSCALL:  # what BPF_PROG_TEST_RUN refuses (EINVAL)
            if len(ctx) > 0xFFFF:
                raise VMError(f"a syscall program's ctx is at most 65535 bytes, not {len(ctx)} "
                              "(the kernel says EINVAL)", program=self.name)
            if len(ctx) < self.max_ctx:
                raise VMError(f"ctx of {len(ctx)} bytes is shorter than the {self.max_ctx} the "
                              "program reaches (the kernel says EINVAL)", program=self.name)
        mem = self.machine.memory
        rt = self.runtime
        rt.output.clear()
        rt.output_size = 0
        rt.funcs = self.machine.funcs  # bpf_loop finds callbacks among this program's functions
        mem.faults = 0
        mem.fault_log.clear()
        ctx_region = data_region = None
        pulled = False
        if self.prog_type in PACKET_TYPES:
            data = bytes(data) or default_packet()
            if len(data) < ETH_HLEN:  # bpf_test_init refuses it (EINVAL)
                raise VMError(f"packet of {len(data)} bytes is shorter than an Ethernet header "
                              "(the kernel says EINVAL)", program=self.name)
            # eth_type_trans pulls the Ethernet header; only tc types get it pushed back before
            # the run, and the others get it back zeroed afterwards (data_out)
            pulled = self.prog_type not in L2_TYPES and self.prog_type != BPF_PROG_TYPE_XDP
            data_region = mem.add_region("packet", bytearray(data[ETH_HLEN:] if pulled
                                                             else data))
            ctx_region = _packet_ctx(mem, self.prog_type, ctx, data_region, data[:ETH_HLEN])
            r1 = ctx_region.base
        elif data:
            raise NotSupportedError("data_in for this program type",
                                    f"program {self.name!r} takes a context only")
        elif ctx or self.prog_type != BPF_PROG_TYPE_SYSCALL:
            ctx_region = mem.add_region("ctx", bytearray(ctx))
            r1 = ctx_region.base
        else:
            r1 = 0
        n = max(1, int(repeat))
        total_insns = 0
        try:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                r0, used = self.machine.run(r1, self.budget if budget is None else budget)
                total_insns += used
            dt = time.perf_counter_ns() - t0
        finally:
            for reg in (ctx_region, data_region):
                if reg is not None:
                    mem.remove_region(reg)
        ctx_out = b""
        if ctx_region is not None and (ctx or data_region is None):
            ctx_out = bytes(ctx_region.buf[:len(ctx)] if data_region is not None
                            else ctx_region.buf)
        data_out = b""
        if data_region is not None:
            data_out = bytes(data_region.buf)
            if pulled:
                data_out = bytes(ETH_HLEN) + data_out
        return RunResult(retval=r0 & U32, duration_ns=dt // n, ctx_out=ctx_out,
                         data_out=data_out,
                         output="".join(rt.output), insns=total_insns // n)

    @property
    def last_faults(self) -> list[tuple[str, int]]:
        """Arena faults the last run survived: (READ|WRITE, user-form address), first 64."""
        return list(self.machine.memory.fault_log)


PACKET_TYPES = {1, 3, 4, 6, 8}  # socket filter, sched_cls, sched_act, xdp, cgroup_skb
L2_TYPES = {3, 4}  # the types whose test run keeps the Ethernet header in skb->data
BPF_PROG_TYPE_XDP = 6
ETH_HLEN = 14
# context fields whose loads the loader (like the kernel's ctx rewriting) turns into packet
# pointers: xdp_md data/data_end/data_meta; __sk_buff data/data_end
XDP_PTR_FIELDS = {0: "data", 4: "data_end", 8: "data_meta"}
SKB_PTR_FIELDS = {76: "data", 80: "data_end"}
PACKET_PTR_FIELDS = {t: frozenset(XDP_PTR_FIELDS if t == BPF_PROG_TYPE_XDP else SKB_PTR_FIELDS)
                     for t in PACKET_TYPES}


def _packet_ctx(mem: Memory, prog_type: int, ctx: bytes, data: Any, eth: bytes) -> Any:
    """A minimal __sk_buff / xdp_md: length fields, and data/data_end loads that give pointers
    into the packet region (the kernel rewrites those context loads the same way). `eth` is the
    frame's Ethernet header (for protocol and pkt_type, which eth_type_trans derives)."""
    pkt = bytes(data.buf)
    buf = bytearray(ctx.ljust(192, b"\0"))
    end = data.base + len(pkt)
    if prog_type == BPF_PROG_TYPE_XDP:
        region = mem.add_region("xdp_md", buf)
        where = {"data": data.base, "data_end": end, "data_meta": data.base}
        region.hook = {(off, 4): where[f] for off, f in XDP_PTR_FIELDS.items()}
        return region
    struct.pack_into("<I", buf, 0, len(pkt))  # len
    struct.pack_into("<I", buf, 4, _pkt_type(eth[:6]))
    struct.pack_into("<I", buf, 16, int.from_bytes(eth[12:14], "little"))  # protocol (be16)
    region = mem.add_region("__sk_buff", buf)
    where = {"data": data.base, "data_end": end}
    region.hook = {(off, 4): where[f] for off, f in SKB_PTR_FIELDS.items()}
    return region


def _pkt_type(dest: bytes) -> int:
    """skb->pkt_type as eth_type_trans sets it on the test run's loopback device (address 0)."""
    if dest[0] & 1:
        return 1 if dest == b"\xff" * 6 else 2  # PACKET_BROADCAST / PACKET_MULTICAST
    return 0 if dest == bytes(6) else 3  # PACKET_HOST / PACKET_OTHERHOST


def load_collection(spec: ObjectSpec, *, user_vm_start: int | None = None,
                    budget: int = DEFAULT_BUDGET, seed: int | None = None,
                    arena_placement: str = "start", **_ignored: Any) -> Collection:
    """Build a Collection(backend="vm") from a spec.

    `arena_placement`: "start" (offset 0, libbpf <= 1.6 and libbpf 1.7 on kernels up to 6.19,
    like the kernel here), "end" (the last pages, libbpf 1.7 where the kernel allows it), or
    "auto" (= "start": what the kernel back end picks on this kernel). `seed` seeds
    bpf_get_prandom_u32. Other options (e.g. the kernel's log_level) are ignored.
    """
    if arena_placement not in ("start", "end", "auto"):
        raise ValueError(f"arena_placement must be 'start', 'end' or 'auto', "
                         f"not {arena_placement!r}")
    arena = None
    aspec = spec.arena
    data_off = 0
    closers: list[Any] = []
    try:
        if aspec is not None:
            start = choose_start(aspec.map_extra, user_vm_start, aspec.name)
            arena = VMArena(aspec.max_entries, user_vm_start=start, flags=aspec.flags,
                            name=aspec.name)
            closers.append(arena.close)
            image = spec.arena_image
            need = -(-len(image) // PAGE) * PAGE
            if need > arena.size:
                raise ObjectError(f"arena globals ({len(image)} bytes) do not fit in the arena "
                                  f"({arena.max_pages} pages)", section=".addr_space.1")
            data_off = arena.size - need if arena_placement == "end" and need else 0
            if image:
                arena.write(arena.user_vm_start + data_off, image)
            arena._globals = ArenaGlobals(
                arena, {n: (v.offset + data_off, v.size, v.type_id)
                        for n, v in spec.arena_vars.items()}, spec.btf)
            arena._btf = spec.btf
            arena.globals_offset = data_off
        memory = Memory(arena)
        maps: dict[str, VMMap] = {}
        handles: dict[str, int] = {}
        entries: dict[str, Any] = {}
        for idx, (name, ms) in enumerate(spec.maps.items()):
            if ms.is_arena:
                handles[name] = MAP_HANDLE_BASE + (idx << 12)
                if arena is not None and name == spec.arena_map:
                    entries[name] = VMArenaMap(name, ms.max_entries, arena.flags)
                continue
            if ms.is_data:
                data = bytes(ms.data or b"")
                m = VMMap(memory, idx, name, 2, 4, max(len(data), ms.value_size, 1), 1,
                          ms.flags, readonly=ms.readonly, initial=data)
            else:
                m = VMMap(memory, idx, name, ms.type, ms.key_size, ms.value_size,
                          ms.max_entries, ms.flags)
            maps[name] = m
            entries[name] = m
            handles[name] = m.handle
        arena_handle = handles.get(spec.arena_map) if spec.arena_map else None
        rt = Runtime(memory, {m.handle: m for m in maps.values()}, arena, arena_handle, seed)
        programs: dict[str, Program] = {}
        for pname, ps in spec.programs.items():
            unit = _prepare(ps, spec, maps, handles, arena, data_off)
            bindings = {c.name: _bind(rt, c) for c in unit.calls.values() if c.kind != "pcall"}
            machine = Machine(unit, memory, bindings)
            programs[pname] = VMProgram(ps, machine, rt, budget)
        gv = GlobalVariables(spec.btf)
        for name, ms in spec.maps.items():
            if ms.is_data:
                for vname, v in ms.variables.items():
                    gv._add(vname, maps[name], v.offset, v.size, v.type_id)
    except BaseException:
        for c in reversed(closers):
            c()
        raise

    def close() -> None:
        for p in programs.values():
            p.closed = True  # type: ignore[attr-defined]
        for m in entries.values():
            m.closed = True

    coll = Collection(backend="vm", programs=programs, maps=entries, arena=arena, globals=gv,
                      btf=spec.btf, spec=spec)
    coll._closers.extend([*closers, close])
    return coll


def _bind(rt: Runtime, c: tr.CallTarget):
    kind, key = c.kind, c.key  # type: ignore[attr-defined]
    if kind == "helper":
        return rt.binding("helper", key)
    if kind == "kfunc":
        return rt.binding("kfunc", key)

    def missing(*_a: int) -> int:
        raise NotSupportedError(f"kfunc {key!r}", "the VM does not implement it (a weak extern "
                                "the program called anyway)")
    return missing


class Slot(NamedTuple):
    """One 8-byte instruction slot, as the VM keeps it after relocation."""

    opcode: int
    dst: int
    src: int
    off: int
    imm: int


def _slot(x: Any) -> Slot:
    if isinstance(x, (bytes, bytearray, memoryview)):
        if len(x) != 8:
            raise InvalidInstruction(f"an instruction is 8 bytes, got {len(x)}")
        op, regs, off, imm = struct.unpack("<BBhi", bytes(x))
        return Slot(op, regs & 15, regs >> 4, off, imm)
    try:
        return Slot(int(x.opcode), int(x.dst), int(x.src), int(x.off), int(x.imm))
    except (AttributeError, TypeError, ValueError):
        raise InvalidInstruction(f"not an instruction: {x!r}") from None


def _prepare(ps: ProgramSpec, spec: ObjectSpec, maps: dict[str, VMMap],
             handles: dict[str, int], arena: VMArena | None, data_off: int = 0) -> tr.Unit:
    insns = [_slot(x) for x in ps.insns]
    n = len(insns)
    ldimm: dict[int, int] = {}
    calls: dict[int, tr.CallTarget] = {}
    reloc_at = {}
    for r in ps.relocations:
        if not 0 <= r.insn_index < n:
            raise ObjectError(f"relocation points past the program ({n} slots)",
                              insn_index=r.insn_index, section=ps.section)
        reloc_at[r.insn_index] = r
    poisoned: set[int] = set()
    if ps.core_relos:
        poisoned = _apply_core(spec, ps, insns)
    i = 0
    while i < n:
        x = insns[i]
        op = x.opcode
        r = reloc_at.get(i)
        if op == 0x18 and i + 1 < n:
            hi = insns[i + 1].imm & U32
            if r is not None:
                ldimm[i] = _reloc_value(r, ps, spec, maps, handles, arena, data_off)
            elif x.src == 0:
                ldimm[i] = (x.imm & U32) | (hi << 32)
            elif x.src == 4:
                ldimm[i] = FUNC_HANDLE_BASE + i + x.imm + 1
            elif x.src == 3:
                raise NotSupportedError("typed __ksym variables (ld_imm64 BTF id)",
                                        f"program {ps.name!r}, instruction {i}")
            else:
                raise InvalidInstruction(f"ld_imm64 with src {x.src} has no relocation",
                                         insn_index=i, program=ps.name)
            i += 2
            continue
        if op == 0x85:
            if i in poisoned:
                c = tr.CallTarget("missing", f"X{i}")
                c.key = f"an unresolved CO-RE relocation at instruction {i}"  # type: ignore
                calls[i] = c
            elif r is not None and r.kind is RelocKind.KFUNC:
                calls[i] = _kfunc_target(r.target, r.weak, ps, i)
                insns[i] = x._replace(src=2, imm=0)
            elif x.src == 0:
                hid = x.imm
                if hid not in HELPERS:
                    raise NotSupportedError(f"{_helper_name(hid)} (id {hid})",
                                            f"the VM does not implement this helper "
                                            f"(program {ps.name!r}, instruction {i})")
                c = tr.CallTarget("helper", f"H{hid}", hid in NEEDS_FP)
                c.key = hid  # type: ignore[attr-defined]
                calls[i] = c
            elif x.src == 1:
                calls[i] = tr.CallTarget("pcall", f"F{i + x.imm + 1}")
            elif x.src == 2:
                raise NotSupportedError(f"kfunc with BTF id {x.imm}",
                                        f"no relocation names it (program {ps.name!r})")
        i += 1
    functions = check_program(insns, has_arena=arena is not None, name=ps.name)
    max_ctx, ctx_loads = scan_ctx(insns, functions)
    ptr_fields = PACKET_PTR_FIELDS.get(ps.prog_type, frozenset())
    pkt_loads = {slot for slot, off in ctx_loads.items() if off in ptr_fields}
    arena_mem: set[int] = set()
    if arena is not None:  # ALU64 on arena pointers runs as ALU32, as the verifier makes it
        convert, arena_mem = analyze(insns, functions)
        for slot in convert:
            x = insns[slot]
            imm = x.imm
            if x.opcode & 0xF0 in (0x60, 0x70, 0xC0) and not x.opcode & 0x08:
                imm &= 31  # a 64-bit shift count on a 32-bit x86 shift: the CPU masks it
            insns[slot] = x._replace(opcode=(x.opcode & ~7) | 4, imm=imm)
    for slot, c in calls.items():
        if c.kind == "pcall" and int(c.name[1:]) not in functions:  # pragma: no cover
            raise InvalidInstruction("call target is not a function", insn_index=slot,
                                     program=ps.name)
    return tr.Unit(name=ps.name, insns=insns, ldimm=ldimm, calls=calls, functions=functions,
                   arena_mem=arena_mem, max_ctx=max_ctx, pkt_loads=pkt_loads)


def _kfunc_target(name: str, weak: bool, ps: ProgramSpec, i: int) -> tr.CallTarget:
    if name in KFUNCS:
        # names from the object never reach the generated source: bound names are numbered
        c = tr.CallTarget("kfunc", f"K{KFUNCS.index(name)}")
        c.key = name  # type: ignore[attr-defined]
        return c
    if not weak:
        raise NotSupportedError(f"kfunc {name!r}", f"the VM does not implement it (program "
                                f"{ps.name!r}, instruction {i})")
    c = tr.CallTarget("missing", f"X{i}")
    c.key = name  # type: ignore[attr-defined]
    return c


def _reloc_value(r: Any, ps: ProgramSpec, spec: ObjectSpec, maps: dict[str, VMMap],
                 handles: dict[str, int], arena: VMArena | None, data_off: int) -> int:
    k = r.kind
    if k is RelocKind.MAP:
        if r.target not in handles:
            raise ObjectError(f"relocation against unknown map {r.target!r}",
                              insn_index=r.insn_index, section=ps.section)
        return handles[r.target]
    if k is RelocKind.MAP_VALUE:
        m = maps.get(r.target)
        if m is None:
            if arena is not None and r.target == spec.arena_map:
                return (arena.user_vm_start + data_off + r.offset) & M64
            raise ObjectError(f"relocation against unknown map {r.target!r}",
                              insn_index=r.insn_index, section=ps.section)
        return (m.region.base + r.offset) & M64
    if k is RelocKind.ARENA:
        if arena is None:
            raise ObjectError("arena relocation but the object has no arena",
                              insn_index=r.insn_index, section=ps.section)
        return (arena.user_vm_start + data_off + r.offset) & M64
    if k is RelocKind.KFUNC:  # &kfunc (bpf_ksym_exists): non-zero when the VM has it
        return 1 if r.target in KFUNCS else 0
    if k is RelocKind.KSYM:
        if r.weak:
            return 0
        raise NotSupportedError(f"kernel variable {r.target!r}",
                                f"the VM has no kernel symbols (program {ps.name!r})")
    raise ObjectError(f"unknown relocation kind {k!r}", insn_index=r.insn_index)


_SIZE_BITS = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}


@lru_cache(maxsize=1)
def _core_target() -> Any:
    """vmlinux BTF of the running kernel when there is one (the kernel back end's target too)."""
    import os

    from ..btf import parse_file
    path = "/sys/kernel/btf/vmlinux"
    return parse_file(path) if os.path.exists(path) else None


def _apply_core(spec: ObjectSpec, ps: ProgramSpec, insns: list[Slot]) -> set[int]:
    """Resolve CO-RE records as libbpf does, against vmlinux BTF where it exists (else against
    the object's own BTF, so the compiled layout stands). Returns the poisoned slots: calls that
    fail only if reached."""
    from ..btf.core import resolve_relo
    from ..errors import BPFError

    if spec.btf is None:
        raise ObjectError(f"program {ps.name!r} has CO-RE relocations but the object has no BTF",
                          section=ps.section)
    target = _core_target() or spec.btf
    poisoned: set[int] = set()
    n = len(insns)
    for cr in ps.core_relos:
        i = cr.insn_index
        what = f"CO-RE kind {cr.kind} access {cr.access!r} on local type {cr.type_id}"
        if not 0 <= i < n:
            raise ObjectError(f"{what}: instruction {i} is past the program", insn_index=i)
        try:
            res = resolve_relo(spec.btf, cr.type_id, cr.access, cr.kind, target)
        except BPFError as e:
            raise ObjectError(f"{what} in program {ps.name!r}: {e}", insn_index=i,
                              section=ps.section) from None
        x = insns[i]
        cls = x.opcode & 7
        if res.poison:
            if x.opcode == 0x18:
                raise ObjectError(f"CO-RE relocation cannot be resolved: {what}", insn_index=i)
            insns[i] = Slot(0x85, 0, 0, 0, 0xBAD2310)
            poisoned.add(i)
            continue
        v = res.target_value
        if x.opcode == 0x18 and i + 1 < n:
            insns[i] = x._replace(imm=_s32(v & U32))
            insns[i + 1] = insns[i + 1]._replace(imm=_s32((v >> 32) & U32))
        elif cls in (4, 7) and not x.opcode & 0x08:
            insns[i] = x._replace(imm=_s32(v & U32))
        elif cls in (1, 2, 3):
            if not -0x8000 <= v < 0x8000:
                raise ObjectError(f"CO-RE offset {v} does not fit 16 bits: {what}", insn_index=i)
            x = x._replace(off=v)
            if (cr.kind == 0 and res.target_field_size != res.local_field_size
                    and (x.opcode & 0xE0) == 0x60 and res.target_field_size in _SIZE_BITS):
                x = x._replace(opcode=(x.opcode & ~0x18) | _SIZE_BITS[res.target_field_size])
            insns[i] = x
        else:
            raise ObjectError(f"CO-RE relocation on opcode 0x{x.opcode:02x}: {what}",
                              insn_index=i)
    return poisoned


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def load_insns(insns: list[Any], *, name: str = "prog", prog_type: int = BPF_PROG_TYPE_SYSCALL,
               arena_pages: int | None = None, arena_flags: int = 0,
               user_vm_start: int | None = None, maps: list[Any] | None = None,
               relocations: list[Any] | None = None, **options: Any) -> Collection:
    """Load a bare instruction list (e.g. from bpfarena.isa.asm) as a one-program Collection.

    `arena_pages` adds an arena map named "arena"; `maps` are extra MapSpecs; `relocations`
    refer to them by name (RelocKind.MAP with target "arena" loads the arena's map handle).
    """
    from ..arena.layout import BPF_F_MMAPABLE
    from ..obj.spec import MapSpec

    flat: list[Any] = []
    for x in insns:
        if isinstance(x, (list, tuple)):
            flat.extend(x)
        else:
            flat.append(x)
    spec = ObjectSpec()
    spec.programs[name] = ProgramSpec(name=name, section="syscall", prog_type=prog_type,
                                      insns=flat, relocations=list(relocations or []))
    if arena_pages is not None:
        spec.maps["arena"] = MapSpec(name="arena", type=33, max_entries=arena_pages,
                                     flags=BPF_F_MMAPABLE | arena_flags,
                                     map_extra=user_vm_start or 0)
        spec.arena_map = "arena"
    for ms in maps or []:
        spec.maps[ms.name] = ms
    return load_collection(spec, user_vm_start=user_vm_start, **options)
