"""Second acceptance audit: selftest-like arena programs an outside checker might write.

Each test drives one program through the public API. With `backend="kernel"` it checks the
contract the kernel's selftests state (verifier_arena, verifier_arena_large, arena_strsearch,
arena_spin_lock, sched_ext-style allocators). With `backend="vm"` it checks the same contract on
the VM and, where the kernel can run arenas, first runs the same steps on the kernel and requires
the VM, loaded at the kernel's user_vm_start, to give the same return values, `.bss/.data`
globals, arena globals and arena bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import avoid_kernel_bug

import bpfarena
from bpfarena.kernel.bugs import NODE_ID_OOPS, has_fix

PAGE = 4096
HERE = Path(__file__).resolve().parent
PROGS = HERE / "progs"
U64 = (1 << 64) - 1


def _kernel_ok() -> bool:
    from bpfarena.kernel.features import arenas_available

    return arenas_available()


def _build(build_dir: Path, name: str, cpu: str = "v3") -> Path:
    return Path(bpfarena.compile(PROGS / name, output_dir=build_dir, cpu=cpu))


Ranges = Callable[[Any], list[tuple[int, int]]]


def _whole(obj: Any) -> list[tuple[int, int]]:
    return [(obj.arena.user_vm_start, obj.arena.size)]


def _state(obj: Any, drive: Callable[[Any], Any], ranges: Ranges) -> dict[str, Any]:
    out = drive(obj)
    a = obj.arena
    st = {
        "drive": out,
        "globals": {n: obj.globals[n] for n in obj.globals.keys()},
        "arena_globals": {n: a.globals[n] for n in a.globals.keys()},
        "resident": a.resident_pages(),
    }
    # reading faults pages in (as a user touch does on both back ends): do it last
    st["bytes"] = [(addr, a.read(addr, n)) for addr, n in ranges(obj)]
    return st


def _diff(k: dict[str, Any], v: dict[str, Any]) -> list[str]:
    bad = [f"{key}: kernel {k[key]!r} != vm {v[key]!r}"
           for key in ("drive", "globals", "arena_globals", "resident") if k[key] != v[key]]
    for (ka, kb), (va, vb) in zip(k["bytes"], v["bytes"], strict=True):
        if ka != va or kb != vb:
            pages = [hex(ka + i) for i in range(0, len(kb), PAGE) if kb[i:i + PAGE] != vb[i:i + PAGE]]
            bad.append(f"arena bytes at {ka:#x} differ in pages {pages[:8]}")
    return bad


def run_both(path: Path, backend: str, drive: Callable[[Any], Any],
             ranges: Ranges = _whole, kernel_bug: Any = None, **load_kw: Any) -> dict[str, Any]:
    """The state after `drive` on `backend`; on the VM, compared with the kernel's first.

    With `kernel_bug` (a bpfarena.kernel.bugs.KernelBug) the kernel comparison is made only on a
    release that carries its fix.
    """
    if backend == "kernel":
        with bpfarena.load(path, backend="kernel", **load_kw) as k:
            return _state(k, drive, ranges)
    start = None
    ks = None
    if _kernel_ok() and (kernel_bug is None or has_fix(kernel_bug)):
        with bpfarena.load(path, backend="kernel", **load_kw) as k:
            start = k.arena.user_vm_start
            ks = _state(k, drive, ranges)
    with bpfarena.load(path, backend="vm", user_vm_start=start, **load_kw) as v:
        vs = _state(v, drive, ranges)
    if ks is not None:
        bad = _diff(ks, vs)
        assert not bad, "VM differs from the kernel:\n" + "\n".join(bad)
    return vs


def _runs(*names: str) -> Callable[[Any], list[int]]:
    return lambda obj: [obj.programs[n].run().retval for n in names]


def _s(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# --- 1. verifier_arena: a 2-page arena ending at a 4 GiB boundary ---------------------------------
EDGE = (1 << 44) | (0xFFFFFFFF - 2 * PAGE + 1)


@pytest.fixture(scope="module")
def edge_path(build_dir: Path) -> Path:
    return _build(build_dir, "audit2_edge.bpf.c")


def test_edge_alloc1(edge_path, backend):
    st = run_both(edge_path, backend, _runs("alloc1"))
    assert st["drive"] == [0]
    out = st["globals"]["out"]
    assert out[:3] == [EDGE, EDGE + PAGE, EDGE + PAGE]  # the freed page comes back at once
    assert st["resident"] == 2
    assert st["bytes"][0][1][:4] == (1).to_bytes(4, "little")
    assert st["bytes"][0][1][PAGE:PAGE + 4] == (3).to_bytes(4, "little")


def test_edge_alloc2_wraps_at_4gib(edge_path, backend):
    st = run_both(edge_path, backend, _runs("alloc2"))
    assert st["drive"] == [0]
    assert st["globals"]["out"][3] == EDGE and st["globals"]["out"][4] == 6
    data = st["bytes"][0][1]
    assert data[PAGE + 7] == 0x5A and data.count(0) == 2 * PAGE - 1  # re-allocated: zeroed


def test_edge_reserve(edge_path, backend):
    st = run_both(edge_path, backend,
                  _runs("reserve1", "free_all", "reserve_twice", "free_all", "reserve_invalid"))
    assert st["drive"] == [0, 0, 0, 0, 0]
    out = st["globals"]["out"]
    assert [_s(x) for x in out[5:7]] == [-16, -16]  # -EBUSY twice
    assert out[:4] == [(-22) & 0xFFFFFFFF] * 4      # NULL/3, base/3, base/4096, base/2^32-1
    assert out[4] == 0                              # an unaligned address is rounded down
    assert st["resident"] == 0


def test_edge_free_all_then_python_sees_zeros(edge_path, backend):
    def drive(obj):
        r = [obj.programs["alloc1"].run().retval, obj.programs["free_all"].run().retval]
        return r + [obj.arena.resident_pages()]

    st = run_both(edge_path, backend, drive)
    assert st["drive"] == [0, 0, 0]
    assert st["bytes"][0][1] == bytes(2 * PAGE)


# --- 2. verifier_arena_large: 4 GiB -----------------------------------------------------------------
LBASE = 1 << 44


@pytest.fixture(scope="module")
def large_path(build_dir: Path) -> Path:
    return _build(build_dir, "audit2_large.bpf.c")


def _large_ranges(obj: Any) -> list[tuple[int, int]]:
    s = obj.arena.user_vm_start
    return [(s, 0x50 * PAGE), (s + 0x10000000 - PAGE, 12 * PAGE), (s + (1 << 32) - 2 * PAGE, 2 * PAGE)]


def test_large_big_alloc1(large_path, backend):
    st = run_both(large_path, backend, _runs("big_alloc1"), _large_ranges)
    assert st["drive"] == [0]
    out = st["globals"]["out"]
    # page 0 holds the arena globals: the second-to-last hint from page 1 is the last page, and
    # the last one wraps onto page 0
    assert out[:4] == [LBASE + PAGE, LBASE + (1 << 32) - PAGE, 0, LBASE + PAGE]
    assert st["arena_globals"]["gdata"] == 0x600D
    assert st["globals"]["wrap"][1] == 0x600D  # a register add wraps in 32 bits
    assert st["resident"] == 3


def test_large_sequential_then_gaps(large_path, backend):
    st = run_both(large_path, backend, _runs("seq_and_gaps"), _large_ranges)
    assert st["drive"] == [0]
    out = st["globals"]["out"]
    first = out[4]
    assert first == LBASE + PAGE
    assert out[5] == first + 64 * PAGE  # 2 pages fit no 1-page gap
    # the 1-page requests go into the gaps (which ones: the kernel's range tree decides)
    holes = {first + i * PAGE for i in range(0, 64, 2)}
    assert out[6] in holes and out[7] in holes and out[6] != out[7]
    assert out[8] == sum(range(2, 65, 2))  # odd pages (values 2, 4, ...) survived


def test_large_reserved_ranges(large_path, backend):
    st = run_both(large_path, backend, _runs("reserved_ranges"), _large_ranges)
    assert st["drive"] == [0]
    out = st["globals"]["out"]
    r = LBASE + 0x10000000
    assert _s(out[9]) == -16 and out[10] == r + 2 * PAGE and out[11] == 0 and _s(out[12]) == -22


def test_large_big_run(large_path, backend):
    def ranges(obj):
        s = obj.arena.user_vm_start
        return [(s, PAGE), (s + PAGE, 2 * PAGE), (s + 2051 * PAGE, PAGE)]

    st = run_both(large_path, backend, _runs("big_run"), ranges)
    assert st["drive"] == [0]
    assert st["globals"]["out"][13:16] == [LBASE + PAGE, 0xEE, 0xEE]
    assert st["resident"] == 3  # globals page + the two pages left of the 2051


# --- 3/6. allocators and a tree ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ds_path(build_dir: Path) -> Path:
    return _build(build_dir, "audit2_ds.bpf.c")


def _walk(arena: Any, root: int) -> tuple[list[int], int, int]:
    """In-order keys, sum of values, max depth of a tree, following user-form pointers."""
    keys: list[int] = []
    total = 0
    depth = 0
    stack = [(arena.view(root, "struct node"), 0)] if root else []
    seen = 0
    while stack:
        n, d = stack.pop()
        seen += 1
        assert seen < 100_000, "cycle in the tree"
        assert n.depth == d
        depth = max(depth, d)
        total += n.value
        keys.append(n.key)
        for child in (n.left, n.right):
            if child is not None:
                stack.append((child, d + 1))
    return sorted(keys), total, depth


def _xorshift_keys(seed: int, n: int) -> list[int]:
    x = seed
    keys = []
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        keys.append(x % 5000)
    return keys


def test_bump_and_chunk_allocators(ds_path, backend):
    st = run_both(ds_path, backend, _runs("bump_init", "bump_test", "chunk_test"))
    assert st["drive"] == [0, 0, 0]
    g, ag = st["globals"], st["arena_globals"]
    base = ag["bump_state"]["base"]
    assert g["bump_a"] == base and g["bump_b"] == base + 8 and g["bump_c"] == 0
    assert ag["bump_state"]["off"] == 24
    assert g["chunk_c"] == g["chunk_a"] and g["chunk_b"] == g["chunk_a"] + 48
    assert ag["chunks_live"] == 2
    assert st["resident"] == 1 + 16 + 1


def test_tree_built_by_bpf_walked_by_python(ds_path, backend):
    def drive(obj):
        rets = _runs("tree_build")(obj)
        keys, total, depth = _walk(obj.arena, obj.arena.globals["root"])
        return rets, keys, total, depth

    st = run_both(ds_path, backend, drive)
    rets, keys, total, depth = st["drive"]
    expect = _xorshift_keys(12345, 1000)
    assert rets == [0]
    assert keys == sorted(set(expect)) and total == 1000
    g = st["globals"]
    assert g["inserted"] == len(set(expect)) and g["dups"] == 1000 - len(set(expect))
    assert g["max_depth"] == depth and g["sum_keys"] == sum(set(expect))
    assert st["arena_globals"]["chunks_live"] == len(set(expect))


def _py_tree(arena: Any, keys: list[int]) -> int:
    """A balanced tree of `keys` (value = key % 7 + 1) built by Python with user-form pointers."""
    size = 48  # struct node: left, right, key, value, depth, pad
    base = arena.alloc_pages((len(keys) * size + PAGE - 1) // PAGE)
    slot = iter(range(len(keys)))
    keys = sorted(keys)

    def build(lo: int, hi: int, d: int) -> int:
        if lo >= hi:
            return 0
        mid = (lo + hi) // 2
        addr = base + next(slot) * size
        left = build(lo, mid, d + 1)
        right = build(mid + 1, hi, d + 1)
        arena.write(addr, left.to_bytes(8, "little") + right.to_bytes(8, "little")
                    + keys[mid].to_bytes(8, "little") + (keys[mid] % 7 + 1).to_bytes(8, "little")
                    + d.to_bytes(4, "little") + bytes(4))
        return addr

    return build(0, len(keys), 0)


def test_tree_built_by_python_summed_by_bpf(ds_path, backend):
    keys = random.Random(7).sample(range(1, 1 << 40), 1500)

    def drive(obj):
        obj.globals["py_root"] = _py_tree(obj.arena, keys)
        return _runs("tree_sum")(obj)

    st = run_both(ds_path, backend, drive)
    g = st["globals"]
    assert st["drive"] == [1500]
    assert g["py_count"] == 1500 and g["py_sum"] == sum(k * (k % 7 + 1) for k in keys) & U64
    assert g["py_max_depth"] == 10  # 1500 nodes: depth floor(log2(1500))


# --- 4/5/7. strings, a lock, subprograms, ALU, atomics ----------------------------------------------
@pytest.mark.parametrize("cpu", ["v3", "v4"])
def test_ops(build_dir, backend, cpu):
    path = _build(build_dir, "audit2_ops.bpf.c", cpu=cpu)
    progs = ("strsearch", "spin", "subprogs", "stack_heavy", "alu", "atomics", "ptr_arith")

    def drive(obj):
        return _runs(*progs)(obj), obj.arena.globals.address("pa_mem")

    st = run_both(path, backend, drive)
    rets, pa_mem = st["drive"]
    g, ag = st["globals"], st["arena_globals"]
    hay = "the quick brown fox jumps over the lazy dog"
    assert rets == [2, 0, 42, 0, 0, 0, 0]
    sb = [-1, -128, 127, 5, -6, 0, 1, -2]
    acc = 0
    for b in sb:
        acc = acc * 3 + b
    assert g["str_out"][:6] == [0, 1, 0, hay.index("og"), acc, len(hay)]
    assert ag["sdst"] == hay.upper()
    assert ag["counter"] == 1000 and ag["lock_word"] == 0 and ag["contended"] == 0
    assert g["sub_out"][:3] == [41, 42, -1] and ag["acc"]["sum"] == sum(range(41)) + 1000
    a = g["alu_out"]
    assert a[0] == 0xABC and a[1] == 24
    if cpu == "v4":
        assert a[2:7] == [-3, -1, 3, -1, -3]  # sdiv/smod truncate toward zero
    assert a[7] == 0x0807060504030201 and a[8] == 0x08070605 and a[9] == 0x0807
    assert ag["a64"] == [15, 0x0F00, 0xFF, 0xF0, 77, 2, 99, 7]
    assert ag["a32"] == [15, 0x0F00, 0xFF, 0xF0, 77, 2, 99, 9]
    assert g["at_out"][:10] == [100, 5, 1, 2, 0, 100, 5, 1, 2, 0]
    # user-form pointer arithmetic: +4 GiB keeps the low 32 bits, so the same memory
    assert g["pa_out"][:6] == [33, 22, 1 << 32, 1, 22, 1]
    assert ag["pa_mem"][7] == pa_mem + 8  # the pointer stored in the arena is user-form


def test_spin_lock_held_gives_up(build_dir, backend):
    """A lock nobody releases: the can_loop spin stops when the frame's timed may_goto budget
    (~250 ms, checked every 0xffff steps) is spent, on the VM as on the kernel."""
    path = _build(build_dir, "audit2_ops.bpf.c")
    with bpfarena.load(path, backend=backend) as obj:
        assert obj.programs["spin_held"].run().retval == 0
        ag = obj.arena.globals
        assert ag["lock_word"] == 0
        assert ag["contended"] >= 2 * 0xFFFF  # the first refill only stamps the start time


# --- 8. other program types on pages Python allocated --------------------------------------------------
PKT = bytes(range(14, 14 + 80))


@pytest.fixture(scope="module")
def types_path(build_dir: Path) -> Path:
    return _build(build_dir, "audit2_types.bpf.c")


def _setup_pages(obj: Any) -> tuple[int, int]:
    s = obj.arena.alloc_pages(1)
    r = obj.arena.alloc_pages(1)
    obj.globals["stats_ptr"] = s
    obj.globals["ring"] = r
    return s, r


def test_tc_program_reads_packet_into_arena(types_path, backend):
    def drive(obj):
        s, _ = _setup_pages(obj)
        ret = obj.programs["tc_hist"].run(data=PKT, repeat=3).retval
        return ret, obj.arena.view(s, "struct stats").value()

    st = run_both(types_path, backend, drive)
    ret, stats = st["drive"]
    assert ret == 1
    assert stats["packets"] == 3 and stats["bytes"] == 3 * len(PKT)
    assert stats["first_word"] == int.from_bytes(PKT[:4], "little")
    assert stats["hist"] == [3 * 4] * 16 and stats["last_len"] == -len(PKT)


def test_socket_filter_sees_skb_after_eth_header(types_path, backend):
    def drive(obj):
        _, r = _setup_pages(obj)
        rets = [obj.programs["sock_keep"].run(data=PKT).retval,
                obj.programs["sock_keep"].run(data=PKT[:50]).retval]
        return rets, [obj.arena.read_u64(r + 8 * i) for i in range(2)]

    st = run_both(types_path, backend, drive)
    rets, ring = st["drive"]
    proto = int.from_bytes(PKT[12:14], "little")
    # BPF_PROG_TEST_RUN pulls the Ethernet header for a socket filter: skb->len = size - 14
    assert rets == [40, 50 - 14]
    assert ring == [((len(PKT) - 14) << 32) | proto, ((50 - 14) << 32) | proto]
    assert st["globals"]["ring_head"] == 2


def test_raw_tp_reads_what_python_wrote(types_path, backend):
    def drive(obj):
        s, _ = _setup_pages(obj)
        obj.arena.write_u32(s + 144, 0x12345678)  # struct stats.first_word
        return _runs("tp_count", "tp_count")(obj)

    st = run_both(types_path, backend, drive)
    assert st["drive"] == [0x12345678 ^ 0xFFFF] * 2
    assert st["arena_globals"]["tp_calls"] == 2


def test_xdp_program_reads_and_writes_packet(types_path, backend):
    def drive(obj):
        s, _ = _setup_pages(obj)
        r = obj.programs["xdp_first"].run(data=PKT)
        return r.retval, r.data_out[:8], obj.arena.read_u32(s + 144)

    st = run_both(types_path, backend, drive)
    ret, head, first = st["drive"]
    assert ret == 2  # XDP_PASS
    assert first == int.from_bytes(PKT[:4], "little")
    assert head == (0xDEADBEEF).to_bytes(4, "little") + PKT[4:8]


# --- kfunc argument edge cases; ALU64 on an arena pointer in asm ---------------------------------------
@pytest.fixture(scope="module")
def kfunc_path(build_dir: Path) -> Path:
    return _build(build_dir, "audit2_kfunc.bpf.c")


def test_kfunc_argument_edges(kfunc_path, backend):
    def drive(obj):
        return _runs("kfunc_edges")(obj), obj.arena.user_vm_start

    st = run_both(kfunc_path, backend, drive)
    rets, start = st["drive"]
    assert rets == [0]

    def at(page: int) -> int:
        return start + page * PAGE

    k = st["globals"]["kout"]
    assert k[:4] == [0, 0, 0, at(1)]       # 0 pages, > max_entries, 16 with page 0 taken: NULL
    assert k[4:8] == [0, 0, 0, 0]          # unaligned, past the end, below the start, overhanging
    assert k[8:10] == [at(15), at(1)]      # the last page; node 0 is a real node
    assert k[11] == at(8)                  # a hint in 32-bit form
    assert k[12] == at(4) and k[13] == 1   # freeing 0 pages frees nothing
    assert k[14:18] == [1, 0, 0, 0]        # partial frees, and a free in 32-bit form
    assert k[18] == 0 and _s(k[19]) == -22 and k[20] == 0 and k[21] == 0
    assert k[22] == 0x1111
    assert st["resident"] == 4             # globals, 1, 8, 15


def test_alloc_pages_on_a_missing_numa_node(kfunc_path, backend):
    """NULL for a node that does not exist, as kernels with the node-id check say (7.3.4 guest).

    Older kernels oops here, so the kernel runs this only where the release carries the fix.
    """
    if backend == "kernel":
        avoid_kernel_bug(NODE_ID_OOPS)
    def drive(obj):
        return _runs("kfunc_missing_node")(obj), obj.arena.user_vm_start

    st = run_both(kfunc_path, backend, drive, kernel_bug=NODE_ID_OOPS)
    rets, start = st["drive"]
    assert rets == [0]
    assert st["globals"]["nout"][:3] == [0, 0, start + PAGE]  # 4096 and -2 fail; node 0 works
    assert st["resident"] == 2  # the globals' page and node 0's page


def test_the_node_id_gate(monkeypatch):
    """The gate itself: which releases may make the call, and a Python-side call never reaches
    an affected kernel (the kernel arena refuses a missing node before calling the kfunc)."""
    from bpfarena.kernel import arena as karena

    bug = NODE_ID_OOPS
    for release in ("6.18.15+deb13-amd64", "6.12.90", "7.0.9", "6.19.3", "6.13.1", "6.9.0", "odd"):
        assert bug.affects(release), release
    for release in ("6.18.33", "6.18.44-fc-v1300", "6.12.91+deb13-amd64", "7.0.10", "7.1.0",
                    "7.3.4+deb13-amd64", "6.8.12", "5.15.0"):
        assert not bug.affects(release), release
    calls = []

    class Progs:
        def alloc(self, addr: int, count: int, node: int) -> int:
            calls.append(node)
            return 0x1000

    arena = karena.KernelArena.__new__(karena.KernelArena)
    monkeypatch.setattr(arena, "_programs", lambda: Progs(), raising=False)
    monkeypatch.setattr(karena, "online_nodes", lambda: frozenset({0, 1}))
    assert arena._alloc_pages(1, None, 4096) == 0
    assert arena._alloc_pages(1, None, -2) == 0
    assert calls == []
    assert arena._alloc_pages(1, None, 1) == 0x1000 and arena._alloc_pages(1, None, -1) == 0x1000
    assert calls == [1, -1]


def test_alu64_on_arena_pointer_is_32bit(kfunc_path, backend):
    def drive(obj):
        return _runs("asm_alu")(obj), obj.arena.globals.address("g0")

    st = run_both(kfunc_path, backend, drive)
    rets, g0 = st["drive"]
    a = st["globals"]["aout"]
    assert rets == [0]
    assert a[:4] == [0x1111, (g0 + 8) & 0xFFFFFFFF, g0 + 8, 0x4242]
