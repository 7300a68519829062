"""Programs the kernel's verifier refuses surface as VerifierError with the log and the failing
instruction."""

from __future__ import annotations

import errno
import os

import pytest

import bpfarena
from bpfarena.errors import VerifierError
from bpfarena.kernel.relocate import Insns, encode_insns
from bpfarena.obj import ObjectSpec


def _only(path, name: str) -> ObjectSpec:
    spec = ObjectSpec.from_file(str(path))
    spec.programs = {name: spec.programs[name]}
    return spec


def _find(spec: ObjectSpec, name: str, pred) -> int:
    ins = Insns(encode_insns(spec.programs[name].insns))
    hits = [i for i in range(len(ins)) if pred(*ins.get(i))]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.fixture
def bad(bpf_obj):
    return bpf_obj("load_bad.bpf.c")


def test_uninitialized_register(bad, kernel):
    spec = _only(bad, "uninit_read")
    # the `rX = r5` move (ALU64 MOV X, src r5)
    want = _find(spec, "uninit_read", lambda c, d, s, o, m: c == 0xBF and s == 5)
    with pytest.raises(VerifierError) as ei:
        bpfarena.load(spec, backend="kernel")
    e = ei.value
    assert e.program == "uninit_read"
    assert e.errno in (errno.EACCES, errno.EINVAL)
    assert "R5 !read_ok" in e.log
    assert e.insn_index == want
    assert "uninit_read" in str(e) and "R5 !read_ok" in str(e)
    assert f"at instruction {want}" in str(e)


def test_stack_out_of_bounds(bad, kernel):
    spec = _only(bad, "stack_oob")
    want = _find(spec, "stack_oob", lambda c, d, s, o, m: c == 0x7B and d == 10 and o == 8)
    with pytest.raises(VerifierError) as ei:
        bpfarena.load(spec, backend="kernel")
    e = ei.value
    assert e.errno == errno.EACCES
    assert "invalid write to stack" in e.log
    assert e.insn_index == want
    # str() shows the tail of the log, not all of it
    tail = str(e).split("verifier log (tail):\n", 1)[1]
    assert tail.splitlines()[-1] == e.log.rstrip("\n").splitlines()[-1]


def test_whole_object_fails_on_first_bad_program_without_leaks(bad, kernel):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(VerifierError) as ei:
        bpfarena.load(bad, backend="kernel")
    assert ei.value.program in ("uninit_read", "stack_oob")
    assert len(os.listdir("/proc/self/fd")) == before


def test_good_program_of_the_same_object_loads(bad, kernel):
    with bpfarena.load(_only(bad, "fine"), backend="kernel") as obj:
        assert obj.programs["fine"].run().retval == 7
