"""Kernel-only arena behaviour: memory cost, fd/mapping hygiene, sharing between processes, and
the errno oracle (the kernel itself refuses what check_create refuses, with the same errno)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

import bpfarena
from bpfarena import _sys
from bpfarena.arena import BPF_F_MMAPABLE, BPF_F_SEGV_ON_FAULT, PAGE_SIZE
from bpfarena.errors import ArenaError, NotSupportedError, SyscallError
from bpfarena.kernel.arena import KernelArena, ensure_bpffs

P = PAGE_SIZE
SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def status_kib(*fields: str) -> int:
    total = 0
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                total += int(rest.split()[0])
    return total


def mapping_rss_kib(addr: int) -> int | None:
    """Rss of the /proc/self/smaps entry that starts at addr."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                inside = int(head.split("-")[0], 16) == addr
            elif inside and head == "Rss:":
                return int(line.split()[1])
    return None


def mapped(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        return any(int(ln.split("-")[0], 16) == addr for ln in f)


def nfds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=120)


# --- memory ----------------------------------------------------------------------------------------

def test_4gib_arena_costs_almost_nothing_until_touched(kernel):
    shared_before = status_kib("RssFile", "RssShmem")
    rss_before = status_kib("VmRSS")
    with bpfarena.Arena(pages=1 << 20, backend=kernel) as a:
        assert a.size == 4 << 30
        assert status_kib("VmRSS") - rss_before < 1024
        assert mapping_rss_kib(a.user_vm_start) == 0
        base = a.user_vm_start
        for i in range(1000):
            a.write(base + i * 1021 * P, b"\x01")  # 1,000 distinct pages spread over 4 GiB
        assert mapping_rss_kib(a.user_vm_start) == 4000
        grew = status_kib("RssFile", "RssShmem") - shared_before
        assert 3600 <= grew <= 4400
        assert a.resident_pages() == 1000


# --- hygiene ---------------------------------------------------------------------------------------

def test_close_releases_fds_and_mapping(kernel):
    before = nfds()
    a = bpfarena.Arena(pages=16, backend=kernel)
    base = a.user_vm_start
    a.alloc_pages(2)  # loads the kfunc program
    a.reserve_pages(base + 8 * P, 1)
    a.resident_pages()
    assert mapped(base) and nfds() > before
    a.close()
    assert not mapped(base)
    assert nfds() == before


def test_no_leaks_over_many_arenas(kernel):
    before = nfds()
    for _ in range(20):
        with bpfarena.Arena(pages=8, backend=kernel) as a:
            a.free_pages(a.alloc_pages(1), 1)
        with pytest.raises(ArenaError):
            bpfarena.Arena(pages=8, backend=kernel, user_vm_start=(1 << 44) + 1)
    assert nfds() == before


def test_memoryview_is_released_on_close(kernel):
    a = bpfarena.Arena(pages=4, backend=kernel)
    mv = a.memoryview()
    a.close()
    with pytest.raises(ValueError):
        mv[0]  # released, not a dangling pointer


def test_numpy_arrays_keep_the_mapping_alive(kernel):
    np = pytest.importorskip("numpy")
    a = bpfarena.Arena(pages=4, backend=kernel)
    arr = a.numpy("u1", count=16)
    arr[0] = 9
    with pytest.warns(ResourceWarning):
        a.close()
    assert arr[0] == 9 and isinstance(arr, np.ndarray)  # still valid memory


# --- the kernel is the oracle for create-time errors ----------------------------------------------

@pytest.mark.parametrize("pages,extra,flags,err", [
    (0, 0, 0, errno.EINVAL),
    ((1 << 20) + 1, 0, 0, errno.E2BIG),
    (4, (1 << 44) + 123, 0, errno.EINVAL),
    (2, (1 << 44) + (1 << 32) - P, 0, errno.ERANGE),
    (4, 0, 1 << 5, errno.EINVAL),
])
def test_kernel_gives_the_same_errno(kernel, pages, extra, flags, err):
    with pytest.raises(SyscallError) as ei:
        _sys.map_create(33, 0, 0, pages, flags=BPF_F_MMAPABLE | flags, map_extra=extra)
    assert ei.value.errno == err
    with pytest.raises(ArenaError) as ei:
        bpfarena.Arena(pages=pages, backend=kernel, user_vm_start=extra or None, flags=flags)
    assert ei.value.errno == err


def test_mapping_over_an_existing_mapping_is_refused(kernel):
    with bpfarena.Arena(pages=4, backend=kernel) as a:
        with pytest.raises(ArenaError) as ei:
            bpfarena.Arena(pages=4, backend=kernel, user_vm_start=a.user_vm_start)
        assert ei.value.errno == errno.EEXIST
        assert a.read(a.user_vm_start, 1) == b"\0"


def test_address_outside_user_space(kernel):
    with pytest.raises(ArenaError) as ei:
        bpfarena.Arena(pages=4, backend=kernel, user_vm_start=1 << 47)
    assert ei.value.errno in (errno.ENOMEM, errno.EBUSY, errno.EINVAL)


def test_unprivileged_gets_not_supported(kernel):
    r = run_python("""
        import bpfarena
        from bpfarena.kernel.features import arenas_available, why_unavailable
        print(arenas_available()); print(why_unavailable())
        try:
            bpfarena.Arena(pages=1)
        except bpfarena.errors.NotSupportedError as e:
            print("NotSupported", e.errno, e)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("True")  # as root it works
    nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", "print(1)"], capture_output=True)
    if nobody.returncode != 0:
        pytest.fail(f"setpriv is needed to drop privileges: {nobody.stderr!r}")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", textwrap.dedent("""
        import bpfarena
        from bpfarena.kernel.features import arenas_available, why_unavailable
        print(arenas_available()); print(why_unavailable())
        try:
            bpfarena.Arena(pages=1)
        except bpfarena.errors.NotSupportedError as e:
            print("NotSupported", e.errno, e)
    """)], env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "False"
    assert "CAP_BPF" in lines[1]
    assert lines[2].startswith(f"NotSupported {errno.EPERM}") and "CAP_BPF" in lines[2]


def test_not_supported_error_type():
    e = NotSupportedError("BPF arenas", "x", min_kernel="6.9")
    assert "6.9" in str(e)


# --- attach and share ------------------------------------------------------------------------------

def test_open_by_map_id_in_this_process_shares_the_mapping(kernel):
    with bpfarena.Arena(pages=8, backend=kernel) as a:
        p = a.alloc_pages(1)
        a.write(p, b"same bytes")
        with bpfarena.Arena.open(map_id=a.map_id) as b:
            assert isinstance(b, KernelArena)
            assert b.user_vm_start == a.user_vm_start and b.max_pages == 8
            assert b.flags == a.flags
            assert b.read(p, 10) == b"same bytes"
            b.write(p, b"SAME")
            assert a.read(p, 4) == b"SAME"
        assert a.read(p, 4) == b"SAME"  # closing b kept a's mapping
    assert not mapped(p)


def test_open_errors(kernel):
    with pytest.raises(ArenaError):
        bpfarena.Arena.open(map_id=0x7FFFFFF0)
    with pytest.raises(ArenaError):
        bpfarena.Arena.open(pinned="/sys/fs/bpf/does-not-exist")
    with pytest.raises(ArenaError):
        bpfarena.Arena.open()
    with _sys.map_create(2, 4, 4, 1) as fd:  # not an arena
        info = _sys.map_info(fd)
        with pytest.raises(ArenaError) as ei:
            bpfarena.Arena.open(map_id=info.id)
        assert ei.value.errno == errno.EINVAL


def test_open_by_map_id_from_another_process(kernel):
    with bpfarena.Arena(pages=16, backend=kernel, flags=BPF_F_SEGV_ON_FAULT) as a:
        p = a.alloc_pages(2)
        a.write(p, b"from parent")
        r = run_python("""
            import sys, bpfarena
            a = bpfarena.Arena.open(map_id=int(sys.argv[1]))
            p = int(sys.argv[2])
            print(hex(a.user_vm_start), a.max_pages, a.flags)
            print(a.read(p, 11).decode())
            a.write(p + 4096, b"from child")
            try:
                a.read(a.user_vm_start + 10 * 4096, 1)
            except bpfarena.errors.ArenaError as e:
                print("fault", e.errno)
            a.close()
        """, str(a.map_id), str(p))
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == f"{hex(a.user_vm_start)} 16 {a.flags}"
        assert lines[1] == "from parent"
        assert lines[2] == f"fault {errno.EFAULT}"
        assert a.read(p + P, 10) == b"from child"


def test_two_processes_share_through_a_pin(kernel):
    d = ensure_bpffs()
    path = os.path.join(d, f"bpfarena_test_{os.getpid()}")
    child = """
        import sys, bpfarena
        a = bpfarena.Arena.open(pinned=sys.argv[1])
        print(hex(a.user_vm_start))
        off = int(sys.argv[2])
        print(a.read(a.user_vm_start + off, 12).decode())
        q = a.alloc_pages(1)
        a.write(q, b"child wrote this")
        print(hex(q))
        a.close()
    """
    try:
        with bpfarena.Arena(pages=32, backend=kernel) as a:
            a.pin(path)
            p = a.alloc_pages(1, addr=a.user_vm_start + 3 * P)
            a.write(p, b"parent wrote")
            r = run_python(child, path, str(3 * P))
            assert r.returncode == 0, r.stderr
            start, seen, q = r.stdout.splitlines()
            assert int(start, 16) == a.user_vm_start
            assert seen == "parent wrote"
            assert a.read(int(q, 16), 16) == b"child wrote this"
            # the child's page is a real allocation: the parent cannot allocate over it
            with pytest.raises(ArenaError):
                a.alloc_pages(1, addr=int(q, 16))
        # the pin keeps the arena alive after every process let go; a map_extra-less arena's
        # address stays fixed, and a new opener must (and does) map it there again
        with bpfarena.Arena.open(pinned=path) as b:
            assert b.user_vm_start == int(start, 16)
            assert b.read(int(q, 16), 5) == b"child"
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_pin_errors(kernel, tmp_path):
    with bpfarena.Arena(pages=1, backend=kernel) as a:
        with pytest.raises(ArenaError):
            a.pin(tmp_path / "not-bpffs")


def test_name_and_node(kernel):
    with bpfarena.Arena(pages=4, backend=kernel, name="my-arena") as a:
        assert a.name == "my-arena"
        assert _sys.map_info(a.fd).name == b"my_arena"  # the kernel's charset
        p = a.alloc_pages(1, node=0)
        assert a.contains(p, P)


def test_resident_pages_sees_pages_allocated_elsewhere(kernel):
    """Pages another handle (or a loaded program) allocates count; its reservations do not,
    since the count looks at the kernel's page mapping, not the free-range tree."""
    with bpfarena.Arena(pages=64, backend=kernel) as a:
        with bpfarena.Arena.open(map_id=a.map_id) as b:
            b.alloc_pages(5)
            b.reserve_pages(a.user_vm_start + 40 * P, 2)
            assert a.resident_pages() == 5
            b.write(a.user_vm_start + 41 * P, b"x")  # a user fault on a reserved page is a page
        assert a.resident_pages() == 6


def test_resident_pages_first_and_last_page(kernel):
    # a count looking at the wrong kernel address (a wrong guard size or base) would shift the
    # probed window and lose one of the two edge pages
    with bpfarena.Arena(pages=64, backend=kernel) as a:
        s = a.user_vm_start
        assert a.alloc_pages(1, addr=s) == s
        assert a.alloc_pages(1, addr=s + 63 * P) == s + 63 * P
        assert a.resident_pages() == 2
        a.free_pages(s, 1)
        assert a.resident_pages() == 1


def test_resident_pages_leaves_the_free_tree_alone(kernel):
    # the count reserves nothing: every page stays allocatable, at the address best fit chose
    # before the count, and repeated counts agree
    with bpfarena.Arena(pages=16, backend=kernel) as a:
        s = a.user_vm_start
        a.alloc_pages(2, addr=s + 4 * P)
        counts = [a.resident_pages() for _ in range(3)]
        assert counts == [2, 2, 2]
        assert a.alloc_pages(4) == s
        assert a.alloc_pages(10) == s + 6 * P
        assert a.resident_pages() == 16
