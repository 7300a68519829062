"""bpfarena.ds: the Python-side allocator, list and hash table, on real arenas of every back end,
and BPF code (our headers) consuming what Python built."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest

import bpfarena
from bpfarena.arena.layout import PAGE_SIZE, U32
from bpfarena.ds import ArenaAllocator, ArenaHashTable, ArenaList
from bpfarena.ds.alloc import COUNTER_OFFSET
from bpfarena.ds.htab import NODE_OFFSET
from bpfarena.errors import ArenaError


@pytest.fixture
def arena(backend):
    with bpfarena.Arena(pages=2048, backend=backend) as a:
        yield a


def _page(addr: int) -> int:
    return addr & ~(PAGE_SIZE - 1)


# --- allocator --------------------------------------------------------------------------------
def test_alloc_layout_matches_the_c_allocator(arena):
    al = ArenaAllocator(arena)
    a = al.alloc(20)  # rounds to 24
    b = al.alloc(8)
    assert _page(a) == _page(b)
    assert a == _page(a) + COUNTER_OFFSET - 24  # carved downward from PAGE_SIZE - 8
    assert b == a - 8
    # live objects + 1 for being the current page
    assert arena.read_u64(_page(a) + COUNTER_OFFSET) == 3
    assert arena.contains(a, 24)


def test_alloc_moves_on_and_releases_pages(arena):
    al = ArenaAllocator(arena)
    first = al.alloc(2000)
    second = al.alloc(2000)  # 4088 - 4000 = 88 left: the next one needs a new page
    third = al.alloc(2000)
    assert _page(first) == _page(second) != _page(third)
    old = _page(first)
    assert arena.read_u64(old + COUNTER_OFFSET) == 2  # retired: no current-page reference
    al.free(first)
    assert arena.read_u64(old + COUNTER_OFFSET) == 1
    before = arena.resident_pages()
    al.free(second)  # the last object: the page goes back to the arena
    assert arena.resident_pages() == before - 1
    # the freed page is free for the kernel's allocator again: a hint there succeeds
    assert arena.alloc_pages(1, addr=old) == old


def test_alloc_accepts_32bit_pointers_and_rejects_bad_sizes(arena):
    al = ArenaAllocator(arena)
    p = al.alloc(16)
    al.alloc(16)
    al.free(p & U32)  # the BPF form of the same pointer
    assert arena.read_u64(_page(p) + COUNTER_OFFSET) == 2
    for bad in (0, -8, PAGE_SIZE - 8, PAGE_SIZE):
        with pytest.raises(ArenaError) as ei:
            al.alloc(bad)
        assert ei.value.errno == errno.EINVAL


def test_double_free_is_caught(arena):
    al = ArenaAllocator(arena)
    p = al.alloc(64)
    al.release()  # drop the current-page reference: p is the only live object
    al.free(p)  # the page is freed and reads back as zero...
    with pytest.raises(ArenaError):
        al.free(p)  # ...so a second free finds no live objects


def test_alloc_many_layout(arena):
    al = ArenaAllocator(arena, chunk_pages=3)
    per_page = COUNTER_OFFSET // 40
    n = per_page * 7 + 5
    batch = al.alloc_many(n, 40)
    addrs = batch.addrs.astype(object)
    assert len(set(addrs)) == n
    pages = sorted({_page(a) for a in addrs})
    assert len(pages) == 8
    assert len(batch.runs) == 3  # runs of at most 3 pages
    for i, a in enumerate(addrs):
        slot = i % per_page
        assert a == _page(a) + COUNTER_OFFSET - 40 * (slot + 1)
    rows = np.arange(n * 40, dtype=np.uint32).astype(np.uint8).reshape(n, 40)
    rows[:, 0] = 0xAB
    batch.write(rows)
    for i in (0, 1, per_page, n - 1):
        assert arena.read(int(batch.addrs[i]), 40) == rows[i].tobytes()
    counts = [arena.read_u64(p + COUNTER_OFFSET) for p in pages]
    assert counts == [per_page] * 7 + [5]


# --- list -------------------------------------------------------------------------------------
def test_list_build_walk_and_edit(arena):
    head = ArenaList.build(arena, [10, 20, 30])
    lst = ArenaList(arena, head)
    assert lst.values() == [10, 20, 30]
    lst.check_links()
    # stored pointers are user form, as clang stores them
    first = arena.read_u64(head)
    assert first >= arena.user_vm_start and arena.contains(first)
    # building onto a non-empty list puts the new values in front
    ArenaList.build(arena, [1, 2], head=head)
    assert lst.values() == [1, 2, 10, 20, 30]
    lst.check_links()
    elems = list(lst)
    lst.delete(elems[2])
    assert lst.values() == [1, 2, 20, 30]
    lst.check_links()
    lst.delete(elems[0])
    lst.add_head(elems[2])
    assert lst.values() == [10, 2, 20, 30]
    lst.check_links()
    assert len(lst) == 4


def test_list_walk_accepts_32bit_pointers(arena):
    head = ArenaList.build(arena, list(range(50)))
    lst = ArenaList(arena, head)
    for node in [head, *lst.nodes()]:
        nxt = arena.read_u64(node)
        arena.write_u64(node, nxt & U32)  # the BPF form
    assert lst.values() == list(range(50))


def test_list_cycle_and_wild_pointer(arena):
    head = ArenaList.build(arena, [1, 2, 3])
    lst = ArenaList(arena, head)
    nodes = list(lst.nodes())
    arena.write_u64(nodes[-1], nodes[0])  # last -> first: a cycle
    with pytest.raises(ArenaError) as ei:
        ArenaList(arena, head, max_len=100).values()
    assert ei.value.errno == errno.ELOOP
    arena.write_u64(nodes[1], arena.user_vm_start + arena.size + 4096)
    with pytest.raises(ArenaError) as ei:
        lst.values()
    assert ei.value.errno == errno.EFAULT


# --- hash table ---------------------------------------------------------------------------------
def test_htab_build_and_walk(arena):
    rng = random.Random(7)
    items = {rng.randrange(-(1 << 31), 1 << 31): rng.randrange(-(1 << 31), 1 << 31)
             for _ in range(3000)}
    addr = ArenaHashTable.build(arena, items, n_buckets=200)
    t = ArenaHashTable(arena, addr)
    assert t.n_buckets == 256  # rounded up to a power of two, like arena_htab_init
    assert t.to_dict() == items
    assert len(t) == len(items)
    k = next(iter(items))
    assert t.lookup(k) == items[k]
    assert k in t
    missing = max(items) + 1 if max(items) < (1 << 31) - 1 else min(items) - 1
    assert t.lookup(missing) is None and missing not in t
    assert t.lookup(missing, -1) == -1
    assert int(t.chain_lengths().sum()) == len(items)
    e = t.elements()
    assert (e["hash"] == e["key"]).all()
    assert ((e["addr"] - t.buckets) < arena.size).all()


def test_htab_chain_order_and_links(arena):
    # keys 1, 17, 33 share bucket 1 of 16; each bucket lists newest first
    addr = ArenaHashTable.build(arena, [(1, 100), (17, 117), (33, 133), (2, 2)], n_buckets=16)
    t = ArenaHashTable(arena, addr)
    assert [k for k, _ in t.items() if k & 15 == 1] == [33, 17, 1]
    heads = t.heads()
    assert heads[0] == 0 and heads[3] == 0
    # bucket 1's head points at the node (element + 16) of key 33; pprev links point back
    node = int(heads[1])
    assert arena.read_u32(node - NODE_OFFSET + 4) == 33
    assert arena.read_u64(node + 8) == t.buckets + 8
    nxt = arena.read_u64(node)
    assert arena.read_u64(nxt + 8) == node
    # duplicates: the last value wins
    t2 = ArenaHashTable(arena, ArenaHashTable.build(arena, [(5, 1), (5, 2)], n_buckets=4))
    assert t2.to_dict() == {5: 2}


def test_htab_accepts_32bit_pointers(arena):
    addr = ArenaHashTable.build(arena, {i: -i for i in range(500)}, n_buckets=64)
    t = ArenaHashTable(arena, addr & U32)
    for e in t.elements()["addr"].tolist():
        node = e + NODE_OFFSET
        arena.write_u64(node, arena.read_u64(node) & U32)
    for b in range(t.n_buckets):
        p = t.buckets + 8 * b
        arena.write_u64(p, arena.read_u64(p) & U32)
    assert t.to_dict() == {i: -i for i in range(500)}
    assert t.lookup(499) == -499


def test_htab_bad_input(arena):
    with pytest.raises(ArenaError):
        ArenaHashTable.build(arena, {1 << 31: 0})
    with pytest.raises(ArenaError):
        ArenaHashTable.build(arena, {0: -(1 << 31) - 1})
    with pytest.raises(ArenaError):
        ArenaHashTable.build(arena, {0: 0}, n_buckets=1 << 30)
    with pytest.raises(ArenaError):
        ArenaHashTable(arena, 0)
    p = arena.alloc_pages(1)  # zeroed: n_buckets 0 is not a table
    with pytest.raises(ArenaError, match="power of two"):
        ArenaHashTable(arena, p)


def test_htab_100k_roundtrip(arena):
    items = {k: k ^ 0x5A5A5A5 for k in range(100_000)}
    t = ArenaHashTable(arena, ArenaHashTable.build(arena, items, n_buckets=1 << 15))
    e = t.elements()
    assert len(e) == 100_000
    assert (e["value"] == (e["key"] ^ 0x5A5A5A5)).all()
    assert sorted(e["key"].tolist()) == list(range(100_000))


def test_empty_structures(arena):
    t = ArenaHashTable(arena, ArenaHashTable.build(arena, {}))
    assert t.n_buckets == 1024 and t.items() == [] and len(t) == 0
    head = ArenaList.build(arena, [])
    assert ArenaList(arena, head).values() == []


# --- BPF consuming what Python built -------------------------------------------------------------
def test_bpf_uses_python_built_htab(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_ds.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        n = 2000
        items = {k: 3 * k - 1000 for k in range(n)}
        addr = ArenaHashTable.build(arena, items, n_buckets=512)
        obj.globals["table"] = addr
        obj.globals["nr_keys"] = n + 100
        assert obj.programs["htab_sum"].run().retval == 0
        assert obj.globals["found"] == n
        assert obj.globals["checksum"] == sum(items.values()) % (1 << 64)

        # BPF updates keys [100, 300) (its own allocator) and deletes [1000, 2000), freeing
        # objects Python allocated: their pages go back once empty
        before = arena.resident_pages()
        obj.globals["lo"], obj.globals["hi"] = 100, 300
        assert obj.programs["htab_update"].run().retval == 0
        obj.globals["lo"], obj.globals["hi"] = 1000, 2000
        assert obj.programs["htab_delete"].run().retval == 0
        expect = {k: (2 * k + 1 if 100 <= k < 300 else v) for k, v in items.items() if k < 1000}
        t = ArenaHashTable(arena, addr)
        assert t.to_dict() == expect
        # 1200 of Python's 2000 objects are gone; with 127 per page at least 8 pages emptied,
        # while BPF took at most 3 (globals are already resident, 200 new elements)
        assert arena.resident_pages() <= before + 3 - 8


def test_bpf_pops_python_built_list(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_ds.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        vals = list(range(1, 301))
        head = ArenaList.build(arena, vals)
        obj.globals["head"] = head
        obj.globals["pops"] = 120
        assert obj.programs["list_pop"].run().retval == 0
        assert obj.globals["popped"] == 120
        assert obj.globals["popped_sum"] == sum(vals[:120])
        lst = ArenaList(arena, head)
        assert lst.values() == vals[120:]
        lst.check_links()


# --- long walks: can_loop (may_goto) loops, no fixed chain cap ------------------------------------
# The walk costs grow as elements * chain / 2 steps; these sizes give chains > 1000 (well past the
# old 64-step cap) while staying a few seconds on the VM.
LONG_BUCKETS, LONG_KEYS = 4, 4100


def test_bpf_built_long_chains(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        obj.globals["n_buckets"] = LONG_BUCKETS
        obj.globals["nr_keys"] = LONG_KEYS
        assert obj.programs["htab_build"].run().retval == 0
        t = ArenaHashTable(obj.arena, obj.globals["table"])
        assert t.n_buckets == LONG_BUCKETS
        assert int(t.chain_lengths().min()) > 1000
        assert t.to_dict() == {k: 3 * k + 1 for k in range(LONG_KEYS)}
        # BPF finds every key, however deep in its chain (the oldest keys are at the far end)
        obj.globals["nr_keys"] = LONG_KEYS + 50  # 50 absent keys as well
        assert obj.programs["htab_check"].run().retval == 0
        assert obj.globals["found"] == LONG_KEYS
        assert obj.globals["checksum"] == sum(3 * k + 1 for k in range(LONG_KEYS))


def test_bpf_updates_python_built_long_chains(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        addr = ArenaHashTable.build(arena, {k: -k for k in range(LONG_KEYS)},
                                    n_buckets=LONG_BUCKETS)
        t = ArenaHashTable(arena, addr)
        assert int(t.chain_lengths().min()) > 1000
        obj.globals["table"] = addr
        obj.globals["nr_keys"] = LONG_KEYS
        assert obj.programs["htab_check"].run().retval == 0
        assert obj.globals["found"] == LONG_KEYS
        assert obj.globals["checksum"] == (-sum(range(LONG_KEYS))) % (1 << 64)
        # update must find each old element to replace it: a capped walk would leave duplicates
        assert obj.programs["htab_update"].run().retval == 0
        assert len(t) == LONG_KEYS
        assert t.to_dict() == {k: 3 * k + 1 for k in range(LONG_KEYS)}
        for b in range(LONG_BUCKETS):  # BPF's unlink + relink kept every chain consistent
            ArenaList(arena, t.buckets + 8 * b, node_offset=NODE_OFFSET).check_links()


def test_bpf_lookup_in_default_table_of_100k(backend, bpf_obj):
    """The trap the cap set: 1024 buckets (the default) and 100,000 elements, chains of ~100."""
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        n = 100_000
        addr = ArenaHashTable.build(obj.arena, {k: k ^ 0x5A5A for k in range(n)})
        assert int(ArenaHashTable(obj.arena, addr).chain_lengths().max()) > 64
        obj.globals["table"] = addr
        obj.globals["nr_keys"] = n
        assert obj.programs["htab_check"].run().retval == 0
        assert obj.globals["found"] == n
        assert obj.globals["checksum"] == sum(k ^ 0x5A5A for k in range(n))


def test_bpf_walks_100k_list_in_one_loop(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        vals = [(i * 7919) % 100_003 for i in range(100_000)]
        obj.globals["head"] = ArenaList.build(obj.arena, vals)
        assert obj.programs["list_walk"].run().retval == 0
        assert obj.globals["count"] == len(vals)
        assert obj.globals["sum"] == sum(vals)
        # the bounded variant takes a run-time bound and stops there
        obj.globals["max_steps"] = 300
        assert obj.programs["list_walk_bounded"].run().retval == 1
        assert obj.globals["count"] == 300
        assert obj.globals["sum"] == sum(vals[:300])
        obj.globals["max_steps"] = 1 << 20
        assert obj.programs["list_walk_bounded"].run().retval == 0
        assert obj.globals["count"] == len(vals)


def test_walk_of_a_cyclic_list_ends(backend, bpf_obj):
    """A corrupted (cyclic) list cannot hang a walk: the bounded variant stops at its bound, the
    plain one when the may_goto budget is spent (about 250 ms on x86-64 and in the VM)."""
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        arena = obj.arena
        head = ArenaList.build(arena, list(range(10)))
        nodes = list(ArenaList(arena, head).nodes())
        arena.write_u64(nodes[-1], nodes[0])  # last -> first
        obj.globals["head"] = head
        obj.globals["max_steps"] = 1000
        assert obj.programs["list_walk_bounded"].run().retval == 1
        assert obj.globals["count"] == 1000
        assert obj.globals["sum"] == 100 * sum(range(10))
        assert obj.programs["list_walk"].run().retval == 1
        assert obj.globals["count"] > 10_000


def test_cond_break_loop(backend, bpf_obj):
    with bpfarena.load(bpf_obj("ex_longchain.bpf.c"), backend=backend) as obj:
        obj.globals["target"] = 200_000
        assert obj.programs["cond_count"].run().retval == 0
        assert obj.globals["count"] == 200_000


def test_raw_may_goto_encoding(backend, build_dir):
    """bpfarena.h's fallback for assemblers without the may_goto mnemonic (raw 0xe5 bytes)
    assembles to a working loop too."""
    from bpfarena.cc import compile as cc

    src = Path(__file__).parent / "progs" / "ex_longchain.bpf.c"
    o = cc(src, output_dir=build_dir, extra_flags=["-U__BPF_FEATURE_MAY_GOTO"])
    with bpfarena.load(o, backend=backend) as obj:
        vals = list(range(5000))
        obj.globals["head"] = ArenaList.build(obj.arena, vals)
        assert obj.programs["list_walk"].run().retval == 0
        assert (obj.globals["count"], obj.globals["sum"]) == (len(vals), sum(vals))
        obj.globals["target"] = 12345
        assert obj.programs["cond_count"].run().retval == 0
        assert obj.globals["count"] == 12345


def test_python_structures_avoid_the_null_alias(backend):
    """With user_vm_start on a 4 GiB multiple the arena's first byte casts to NULL in BPF
    (ARENA_FACTS.md section 2): nothing Python builds may live there."""
    with bpfarena.Arena(pages=64, backend=backend, user_vm_start=0x7F0000000000) as arena:
        t = ArenaHashTable(arena, ArenaHashTable.build(arena, {k: k for k in range(600)},
                                                       n_buckets=16))
        assert t.buckets & 0xFFFFFFFF
        assert all(a & 0xFFFFFFFF for a in t.elements()["addr"].tolist())
        assert t.to_dict() == {k: k for k in range(600)}
        al = ArenaAllocator(arena)
        assert all(al.alloc(4088 - 8) & 0xFFFFFFFF for _ in range(8))
