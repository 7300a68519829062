"""The arena contract: what must hold on every back end (the kernel is the oracle).

Each test runs on the kernel and on the VM (`backend` fixture); the VM must give the same results
and the same addresses as the kernel.
"""

from __future__ import annotations

import errno

import pytest

import bpfarena
from bpfarena.arena import BPF_F_MMAPABLE, BPF_F_NO_USER_CONV, BPF_F_SEGV_ON_FAULT, PAGE_SIZE
from bpfarena.errors import ArenaError

P = PAGE_SIZE
U32 = 0xFFFFFFFF
# fixed addresses for user_vm_start tests: 4 GiB aligned, far from anything Python maps
FIXED = [(0x5A00 + i) << 32 for i in range(16)]


@pytest.fixture
def arena(backend):
    with bpfarena.Arena(pages=64, backend=backend) as a:
        yield a


# --- creation ------------------------------------------------------------------------------------

def test_properties(backend):
    with bpfarena.Arena(pages=100, backend=backend, name="props") as a:
        assert a.backend == backend
        assert a.max_pages == 100
        assert a.size == 100 * P
        assert a.user_vm_start % P == 0
        assert a.user_vm_end == a.user_vm_start + a.size
        # the range never crosses a 4 GiB boundary
        assert a.user_vm_start >> 32 == (a.user_vm_end - 1) >> 32
        assert a.flags & BPF_F_MMAPABLE
        assert not a.flags & BPF_F_SEGV_ON_FAULT


def test_fixed_user_vm_start(backend):
    with bpfarena.Arena(pages=8, backend=backend, user_vm_start=FIXED[0]) as a:
        assert a.user_vm_start == FIXED[0]
        p = a.alloc_pages(1)
        assert p == FIXED[0]  # full 64-bit user address: high half of user_vm_start | offset
        assert a.to_kern(p) == 0
        assert a.to_user(0) == 0  # NULL stays NULL


@pytest.mark.parametrize("pages,start,flags,err", [
    (0, None, 0, errno.EINVAL),
    (-1, None, 0, errno.EINVAL),
    ((1 << 20) + 1, None, 0, errno.E2BIG),
    (4, FIXED[1] + 123, 0, errno.EINVAL),  # unaligned
    (2, FIXED[2] + (1 << 32) - P, 0, errno.ERANGE),  # crosses a 4 GiB line
    (4, None, 1 << 5, errno.EINVAL),  # unknown flag
    (4, None, 1 << 19, errno.EINVAL),
])
def test_create_errors(backend, pages, start, flags, err):
    with pytest.raises(ArenaError) as ei:
        bpfarena.Arena(pages=pages, backend=backend, user_vm_start=start, flags=flags)
    assert ei.value.errno == err
    assert str(ei.value)  # a sentence, not just a number


def test_largest_arena_is_accepted(backend):
    with bpfarena.Arena(pages=1 << 20, backend=backend) as a:
        assert a.size == 1 << 32
        assert a.user_vm_start & U32 == 0 or a.user_vm_start >> 32 == (a.user_vm_end - 1) >> 32


# --- data ----------------------------------------------------------------------------------------

def test_untouched_memory_reads_zero_and_writes_stick(arena):
    base = arena.user_vm_start
    assert arena.read(base + 5 * P + 7, 100) == bytes(100)
    arena.write(base + 5 * P + 7, b"hello arena")
    assert arena.read(base + 5 * P + 7, 11) == b"hello arena"
    # a 32-bit arena pointer names the same byte
    assert arena.read((base + 5 * P + 7) & U32, 5) == b"hello"
    arena.write_u64(base + 8, 0x1122334455667788)
    assert arena.read_u64(base + 8) == 0x1122334455667788
    assert arena.read_u32(base + 8) == 0x55667788


def test_write_across_pages(arena):
    base = arena.user_vm_start
    data = bytes(range(256)) * 40
    arena.write(base + 3 * P - 100, data)
    assert arena.read(base + 3 * P - 100, len(data)) == data


def test_out_of_range_access_is_refused(arena):
    with pytest.raises(ArenaError) as ei:
        arena.read(arena.user_vm_end - 4, 8)
    assert ei.value.errno == errno.EFAULT
    with pytest.raises(ArenaError):
        arena.write(arena.user_vm_end, b"x")


def test_memoryview_is_zero_copy(arena):
    mv = arena.memoryview()
    assert len(mv) == arena.size
    mv[P + 3] = 0xAB
    assert arena.read(arena.user_vm_start + P + 3, 1) == b"\xab"
    arena.write(arena.user_vm_start + 2 * P, b"\x01\x02")
    assert bytes(mv[2 * P:2 * P + 2]) == b"\x01\x02"
    mv.release()


def test_numpy_view(arena):
    np = pytest.importorskip("numpy")
    arr = arena.numpy("u4", count=16)
    arr[:] = np.arange(16, dtype="u4")
    assert arena.read_u32(arena.user_vm_start + 4 * 5) == 5
    del arr


# --- pages ---------------------------------------------------------------------------------------

def test_alloc_write_read_free(arena):
    p = arena.alloc_pages(3)
    assert p % P == 0 and arena.contains(p, 3 * P)
    payload = b"\x5a" * (3 * P)
    arena.write(p, payload)
    assert arena.read(p, 3 * P) == payload
    arena.free_pages(p, 3)
    assert arena.read(p, 3 * P) == bytes(3 * P)


def test_alloc_at_hint(arena):
    base = arena.user_vm_start
    p = arena.alloc_pages(2, addr=base + 10 * P)
    assert p == base + 10 * P
    # a hint in the 32-bit form works too
    q = arena.alloc_pages(1, addr=(base + 20 * P) & U32)
    assert q == base + 20 * P


def test_alloc_over_allocated_page_fails(arena):
    base = arena.user_vm_start
    arena.alloc_pages(1, addr=base + 5 * P)
    with pytest.raises(ArenaError) as ei:
        arena.alloc_pages(1, addr=base + 5 * P)
    assert ei.value.errno == errno.ENOMEM
    # all or nothing: a range overlapping page 5 fails and takes none of its free pages
    with pytest.raises(ArenaError):
        arena.alloc_pages(3, addr=base + 4 * P)
    assert arena.alloc_pages(1, addr=base + 4 * P) == base + 4 * P
    assert arena.alloc_pages(1, addr=base + 6 * P) == base + 6 * P


def test_alloc_hint_past_the_end_fails(arena):
    base = arena.user_vm_start
    assert arena.alloc_pages(1, addr=base + 63 * P) == base + 63 * P
    with pytest.raises(ArenaError):
        arena.alloc_pages(2, addr=base + 62 * P)


def test_alloc_bad_counts(arena):
    for count in (0, arena.max_pages + 1):
        with pytest.raises(ArenaError) as ei:
            arena.alloc_pages(count)
        assert ei.value.errno == errno.ENOMEM


def test_alloc_until_full(backend):
    with bpfarena.Arena(pages=4, backend=backend) as a:
        pages = {a.alloc_pages(1) for _ in range(4)}
        assert pages == {a.user_vm_start + i * P for i in range(4)}
        with pytest.raises(ArenaError):
            a.alloc_pages(1)
        a.free_pages(a.user_vm_start + 2 * P, 1)
        assert a.alloc_pages(1) == a.user_vm_start + 2 * P


def test_alloc_takes_the_smallest_free_run(backend):
    # 16 pages, page 8 taken: free runs [0, 8) and [9, 16). Best fit puts 2 pages at 9.
    with bpfarena.Arena(pages=16, backend=backend) as a:
        b = a.user_vm_start
        a.alloc_pages(1, addr=b + 8 * P)
        assert a.alloc_pages(2) == b + 9 * P
        assert a.alloc_pages(1) == b + 11 * P
        assert a.alloc_pages(8) == b


def test_free_is_lenient(arena):
    arena.free_pages(arena.user_vm_start, 0)
    arena.free_pages(arena.user_vm_start + 7 * P, 3)  # never allocated
    p = arena.alloc_pages(1)
    arena.free_pages(p + 123, 1)  # rounded down to the page
    assert arena.alloc_pages(1) == p


def test_reserve_pages(arena):
    base = arena.user_vm_start
    arena.reserve_pages(base + 2 * P, 2)
    with pytest.raises(ArenaError) as ei:
        arena.alloc_pages(1, addr=base + 3 * P)
    assert ei.value.errno == errno.ENOMEM
    with pytest.raises(ArenaError) as ei:
        arena.reserve_pages(base + 3 * P, 1)
    assert ei.value.errno == errno.EBUSY
    p = arena.alloc_pages(1, addr=base + 9 * P)
    with pytest.raises(ArenaError) as ei:
        arena.reserve_pages(p, 1)
    assert ei.value.errno == errno.EBUSY
    with pytest.raises(ArenaError) as ei:
        arena.reserve_pages(base + 63 * P, 2)
    assert ei.value.errno == errno.EINVAL
    arena.reserve_pages(base, 0)  # cnt 0 is fine
    # freeing releases a reservation
    arena.free_pages(base + 2 * P, 2)
    assert arena.alloc_pages(2, addr=base + 2 * P) == base + 2 * P


def test_resident_pages(arena):
    base = arena.user_vm_start
    assert arena.resident_pages() == 0
    p = arena.alloc_pages(3)
    assert arena.resident_pages() == 3
    arena.write(base + 40 * P, b"x")  # a user touch allocates a page
    assert arena.resident_pages() == 4
    arena.reserve_pages(base + 50 * P, 5)  # reservations are not pages
    assert arena.resident_pages() == 4
    arena.free_pages(p, 3)
    assert arena.resident_pages() == 1
    arena.write(base + 51 * P, b"y")  # a user touch turns a reserved page into a real one
    assert arena.resident_pages() == 2
    arena.free_pages(base + 50 * P, 5)  # frees that page and drops the reservation
    assert arena.resident_pages() == 1


# --- pointer forms -------------------------------------------------------------------------------

def test_pointer_forms(arena):
    p = arena.alloc_pages(1) + 24
    k = arena.to_kern(p)
    assert k == p & U32
    assert arena.to_user(k) == p
    assert arena.to_user(0) == 0


def test_no_user_conv(backend):
    with bpfarena.Arena(pages=4, backend=backend, flags=BPF_F_NO_USER_CONV) as a:
        assert a.flags & BPF_F_NO_USER_CONV
        p = a.alloc_pages(1)
        assert p >> 32 == a.user_vm_start >> 32  # alloc still returns the full user address
        assert a.to_user(p) == p & U32  # but the user cast keeps 32 bits only


# --- SEGV_ON_FAULT -------------------------------------------------------------------------------

def test_segv_on_fault(backend):
    with bpfarena.Arena(pages=8, backend=backend, flags=BPF_F_SEGV_ON_FAULT) as a:
        assert a.flags & BPF_F_SEGV_ON_FAULT
        with pytest.raises(ArenaError) as ei:
            a.read(a.user_vm_start + P, 4)
        assert ei.value.errno == errno.EFAULT
        assert ei.value.address == a.user_vm_start + P
        with pytest.raises(ArenaError):
            a.write(a.user_vm_start, b"x")
        p = a.alloc_pages(1)
        a.write(p, b"ok")
        assert a.read(p, 2) == b"ok"
        # a write running into a missing page writes nothing
        with pytest.raises(ArenaError) as ei:
            a.write(p + P - 2, b"abcd")
        assert ei.value.address == p + P
        assert a.read(p + P - 2, 2) == b"\0\0"
        assert a.resident_pages() == 1
        a.free_pages(p, 1)
        with pytest.raises(ArenaError):
            a.read(p, 1)


# --- lifetime ------------------------------------------------------------------------------------

def test_close(backend):
    a = bpfarena.Arena(pages=4, backend=backend)
    p = a.alloc_pages(1)
    a.close()
    assert a.closed
    a.close()
    with pytest.raises(ArenaError) as ei:
        a.read(p, 1)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(ArenaError):
        a.alloc_pages(1)
    with bpfarena.Arena(pages=4, backend=backend) as b:
        assert not b.closed
    assert b.closed
