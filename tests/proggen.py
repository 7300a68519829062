"""Random BPF programs that the kernel verifier accepts, for kernel-vs-VM differential tests.

A generated program is a tree of statements (straight-line snippets and forward if/else blocks),
so it has no loops, and every register it reads was written first: the preamble gives r0..r9
constants (or, for pointer registers, arena pointers) and fills a stack area before the body runs.
Registers have fixed roles for the whole program, because the verifier types registers per path
and rewrites instructions by type: a *pointer* register always holds a PTR_TO_ARENA (the verifier
turns any ALU64 operation on one into its ALU32 form), a *scalar* register always a number.
Pointer registers are never spilled to the stack and never feed scalar arithmetic; they reach
data only through `cast_user`, `wX = wP` and stores into the arena.

The epilogue stores every register and the whole stack area into a result page of the arena and
folds the registers into r0, so a comparison of arena bytes sees every value the program made.

Atomics are always naturally aligned (the pointer is realigned with `&= -8` right before), so the
kernel never sees a split lock. Fetch-and/or/xor are used on the stack only: the x86 JIT refuses
them on arena memory (ARENA_FACTS section 7).

`generate(rng, cfg)` takes any object with the `random.Random` methods used here; the hypothesis
strategy `programs()` passes a `st.randoms()` instance, so hypothesis drives every choice, and
`seeded(seed)` gives the plain generator for long runs.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field, replace
from typing import Any

PAGE = 4096
U64 = (1 << 64) - 1

# opcode pieces (facts from the BPF ISA)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
K, X = 0x00, 0x08
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
MEM, MEMSX, ATOMIC = 0x60, 0x80, 0xC0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
A_FETCH, A_XCHG, A_CMPXCHG, A_LOAD_ACQ, A_STORE_REL = 0x01, 0xE1, 0xF1, 0x100, 0x110
LD_IMM64 = 0x18
SIZES = {1: B, 2: H, 4: W, 8: DW}
COND_OPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)
BIN_OPS = (ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, MOD, XOR, ARSH)
FP = 10

PROG_TYPE_SYSCALL = 31
MAP_TYPE_ARENA = 33
BPF_F_MMAPABLE = 0x400
ARENA_MAP = "arena"
NUMA_NO_NODE = -1

Raw = tuple[int, int, int, int, int]  # (opcode, dst, src, off, imm): one 8-byte slot
Reloc = tuple[int, str, str, int]  # (slot within the snippet, kind, target, offset)


@dataclass
class Snippet:
    """Straight-line instructions with their relocations (slot indexes local to the snippet)."""

    insns: list[Raw]
    relocs: list[Reloc] = field(default_factory=list)
    what: str = ""


@dataclass
class If:
    """`if !(cond) goto else; then...; [goto end; else...]`: forward jumps only."""

    cond: Raw  # a conditional jump whose offset is filled in when lowered
    then: list[Any]
    orelse: list[Any] | None = None
    long_ja: bool = False  # use gotol (JMP32|JA) instead of ja for the jump over `orelse`


Stmt = Snippet | If


@dataclass
class GenConfig:
    """Knobs: turn a feature off to find which one makes a difference."""

    max_body: int = 48  # statements in the body (each 1..~12 slots)
    max_depth: int = 2  # nesting of if/else
    min_pages: int = 2
    max_pages: int = 24
    kfuncs: bool = True  # bpf_arena_alloc/free/reserve_pages calls
    reserve: bool = True  # bpf_arena_reserve_pages (6.17+)
    acq_rel: bool = True  # load-acquire / store-release (6.15+) on the stack
    # on arena memory: off by default, because on this kernel (6.18, x86 JIT) a load-acquire
    # from an unallocated arena page does not clear its destination as other arena loads do
    # (it keeps the old value, or a kernel address for narrow loads); see docs/benchmarks.md
    arena_load_acquire: bool = False
    arena_store_release: bool = True
    # a 32-bit cmpxchg that succeeds does not write r0 on x86, so r0 is zero-extended only by
    # the zext the verifier inserts after it, and the verifier leaves that out where it pruned
    # the path that reads r0 as 64 bits (always on arena memory, sometimes on the stack): by
    # default r0 is made a 32-bit value first (w0 = w0), so the outcome does not depend on it
    cmpxchg32_r0_upper: bool = False
    # a 32-bit fetch-add/xchg on arena memory that faults leaves its register as it was, upper
    # half included, but the verifier assumes a 32-bit result and prunes branches by it (a
    # kernel bug): by default the register is made a 32-bit value first
    fetch32_arena_upper: bool = False
    # the verifier does not carry precision from a fetching stack atomic back to its stack
    # slot, so a branch on the fetched value can be pruned as if the slot still held the
    # constant it held on another path (a kernel bug; seed 20159121 of the second long run): by
    # default the slot is first made unknown to the verifier (a 1-byte store scrubs the spill)
    stack_fetch_known_slot: bool = False
    misaligned_arena: bool = True  # unaligned plain arena loads/stores (may straddle pages)
    ptr_alu: bool = True  # ALU on arena pointers (the verifier makes ALU64 ones 32-bit)
    unmasked_shifts: bool = True  # register shift counts >= the width
    store_ptrs: bool = True  # store pointer registers into the arena as data


@dataclass
class ArenaPrep:
    """What the test writes into the arena from Python before a run: page index -> bytes."""

    pages: dict[int, bytes]
    result_page: int


@dataclass
class GenProgram:
    """One generated program plus the arena contents it expects before it runs."""

    name: str
    body: list[Stmt]
    preamble: list[Stmt]
    epilogue: list[Stmt]
    prep: ArenaPrep
    npages: int
    stack_size: int
    seed: Any = None
    # False when the program frees at an address outside the arena: the kernel back end's
    # resident count (a probe of the arena's own pages) then cannot be compared with the VM's
    # (see same())
    resident_exact: bool = True

    def lower(self) -> tuple[list[Raw], list[tuple[int, str, str, int]]]:
        """Flatten to slots and absolute relocations."""
        out: list[Raw] = []
        rel: list[tuple[int, str, str, int]] = []
        _lower(self.preamble + self.body + self.epilogue, out, rel)
        return out, rel

    def program_spec(self) -> Any:
        from bpfarena.isa.insn import Instruction
        from bpfarena.obj.spec import ProgramSpec, Relocation, RelocKind

        raw, rel = self.lower()
        kinds = {"map": RelocKind.MAP, "arena": RelocKind.ARENA, "kfunc": RelocKind.KFUNC}
        return ProgramSpec(
            name=self.name, section="syscall", prog_type=PROG_TYPE_SYSCALL, sleepable=True,
            insns=[Instruction(*t) for t in raw],
            relocations=[Relocation(i, kinds[k], t, o) for i, k, t, o in rel])

    def n_slots(self) -> int:
        return len(self.lower()[0])

    def without(self, path: tuple[int, ...], part: str = "body") -> GenProgram:
        """A copy with the statement at `path` of `part` ("body" or "preamble") removed (for
        shrinking a failure; the result may be one the verifier refuses)."""
        return replace(self, **{part: _remove(getattr(self, part), path)})


def _remove(stmts: list[Stmt], path: tuple[int, ...]) -> list[Stmt]:
    i = path[0]
    if len(path) == 1:
        return stmts[:i] + stmts[i + 1:]
    s = stmts[i]
    assert isinstance(s, If)
    which, rest = path[1], path[2:]
    if which == 0:
        s2 = If(s.cond, _remove(s.then, rest), s.orelse, s.long_ja)
    else:
        assert s.orelse is not None
        s2 = If(s.cond, s.then, _remove(s.orelse, rest), s.long_ja)
    return stmts[:i] + [s2] + stmts[i + 1:]


def stmt_paths(stmts: list[Stmt], prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths of every statement, outermost first (removal candidates for shrinking)."""
    out = []
    for i, s in enumerate(stmts):
        out.append(prefix + (i,))
        if isinstance(s, If):
            out += stmt_paths(s.then, prefix + (i, 0))
            if s.orelse is not None:
                out += stmt_paths(s.orelse, prefix + (i, 1))
    return out


def _size(stmts: list[Stmt]) -> int:
    n = 0
    for s in stmts:
        if isinstance(s, Snippet):
            n += len(s.insns)
        else:
            n += 1 + _size(s.then)
            if s.orelse is not None:
                n += 1 + _size(s.orelse)
    return n


def _lower(stmts: list[Stmt], out: list[Raw], rel: list[tuple[int, str, str, int]]) -> None:
    for s in stmts:
        if isinstance(s, Snippet):
            base = len(out)
            out.extend(s.insns)
            rel.extend((base + i, k, t, o) for i, k, t, o in s.relocs)
            continue
        then_n = _size(s.then)
        else_n = _size(s.orelse) if s.orelse is not None else -1
        code, dst, src, _off, imm = s.cond
        out.append((code, dst, src, then_n + (1 if s.orelse is not None else 0), imm))
        _lower(s.then, out, rel)
        if s.orelse is not None:
            out.append((JMP32 | JA, 0, 0, 0, else_n) if s.long_ja else (JMP | JA, 0, 0, else_n, 0))
            _lower(s.orelse, out, rel)


# ---------------------------------------------------------------------------------------------
def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def ld_imm64(dst: int, value: int, src: int = 0) -> list[Raw]:
    value &= U64
    return [(LD_IMM64, dst, src, 0, _s32(value)), (0, 0, 0, 0, _s32(value >> 32))]


_INTERESTING32 = (0, 1, 2, 7, 8, 31, 32, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
                  0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x10000, 0xFFFF0000)
_INTERESTING64 = (1 << 63, (1 << 63) - 1, U64, 1 << 32, (1 << 32) - 1, 0xFFFFFFFF00000000,
                  0x8000000080000000, 0x0123456789ABCDEF)


class _Gen:
    def __init__(self, rng: Any, cfg: GenConfig, name: str) -> None:
        self.r = rng
        self.cfg = cfg
        self.name = name

    # -- random values -------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def imm32(self) -> int:
        c = self.r.randrange(6)
        if c == 0:
            v = self.r.choice(_INTERESTING32)
        elif c == 1:
            v = -self.r.choice(_INTERESTING32)
        elif c <= 3:
            v = self.r.randrange(-300, 300)
        else:
            v = self.r.getrandbits(32)
        return _s32(v)

    def val64(self) -> int:
        c = self.r.randrange(5)
        if c == 0:
            return self.r.choice(_INTERESTING64)
        if c == 1:
            return self.imm32() & U64
        return self.r.getrandbits(64)

    # -- program -----------------------------------------------------------------------------
    def program(self) -> GenProgram:
        r, cfg = self.r, self.cfg
        self.npages = r.randint(cfg.min_pages, cfg.max_pages)
        self.size = self.npages * PAGE
        nptr = r.randint(1, 3)
        self.ptrs = sorted(r.sample(range(1, 10), nptr))
        self.scalars = [i for i in range(10) if i not in self.ptrs]
        self.stack_size = r.choice((8, 16, 32, 64, 64, 128, 128, 256, 504))
        self.inexact = False
        prep = self.prep()
        pre = self.preamble(prep)
        self.budget = cfg.max_body
        body = self.block(r.randint(0, cfg.max_body), 0)
        epi = self.epilogue(prep)
        return GenProgram(self.name, body, pre, epi, prep, self.npages, self.stack_size,
                          resident_exact=not self.inexact)

    def prep(self) -> ArenaPrep:
        r = self.r
        result = r.randrange(self.npages)
        pages: dict[int, bytes] = {}
        for i in range(self.npages):
            if i != result and self.chance(0.4):
                kind = r.randrange(4)
                if kind == 0:
                    data = bytes(PAGE)
                elif kind == 1:
                    data = r.randbytes(PAGE)
                else:  # mostly zero with some random words: values that compare interestingly
                    buf = bytearray(PAGE)
                    for _ in range(r.randint(1, 40)):
                        o = r.randrange(0, PAGE - 8)
                        buf[o:o + 8] = self.val64().to_bytes(8, "little")
                    data = bytes(buf)
                pages[i] = data
        return ArenaPrep(pages, result)

    def anchor_off(self) -> int:
        """An offset inside the arena for an ld_imm64 of an arena address."""
        r = self.r
        c = r.randrange(4)
        if c == 0:
            return r.randrange(self.npages) * PAGE
        if c == 1:
            return r.randrange(0, self.size, 8)
        if c == 2:
            return r.randrange(self.npages) * PAGE + r.choice((PAGE - 8, PAGE - 4, PAGE - 1))
        return r.randrange(0, self.size)

    def set_ptr(self, p: int, tmp: int | None = None) -> Snippet:
        """p = cast_kern(arena address): via a scalar temporary or via p itself."""
        off = self.anchor_off()
        t = p if tmp is None else tmp
        insns = ld_imm64(t, 0) + [(ALU64 | MOV | X, p, t, 1, 1)]
        return Snippet(insns, [(0, "arena", ARENA_MAP, off)], f"anchor r{p} @+{off:#x}")

    def set_scalar(self, reg: int) -> Snippet:
        c = self.r.randrange(3)
        if c == 0:
            return Snippet([(ALU64 | MOV | K, reg, 0, 0, self.imm32())])
        if c == 1:
            return Snippet([(ALU | MOV | K, reg, 0, 0, self.imm32())])
        return Snippet(ld_imm64(reg, self.val64()))

    def preamble(self, prep: ArenaPrep) -> list[Stmt]:
        r, cfg = self.r, self.cfg
        out: list[Stmt] = []
        saved: list[int] = []  # scalar callee-saved registers holding kfunc results
        if cfg.kfuncs:
            for _ in range(r.choice((0, 0, 1, 1, 2, 3))):
                out.append(self.kfunc_call())
                keep = [x for x in self.scalars if x >= 6 and x not in saved]
                if keep:
                    dst = r.choice(keep)
                    saved.append(dst)
                    out.append(Snippet([(ALU64 | MOV | X, dst, 0, 0, 0)], what="keep r0"))
        for reg in self.scalars:
            if reg not in saved:
                out.append(self.set_scalar(reg))
        for p in self.ptrs:
            out.append(self.set_ptr(p))
        # the stack area [fp - stack_size, fp)
        for o in range(8, self.stack_size + 1, 8):
            if self.chance(0.5):
                out.append(Snippet([(ST | MEM | DW, FP, 0, -o, self.imm32())]))
            else:
                out.append(Snippet([(STX | MEM | DW, FP, r.choice(self.scalars), -o, 0)]))
        return out

    def kfunc_call(self) -> Snippet:
        """A call of an arena kfunc; r0 ends up a scalar (the user form of what it returned)."""
        r = self.r
        which = r.randrange(5 if self.cfg.reserve else 4)
        ins: list[Raw] = ld_imm64(1, 0)
        rel: list[Reloc] = [(0, "map", ARENA_MAP, 0)]

        def addr_arg(reg: int, allow_null: bool) -> None:
            c = r.randrange(6)
            if allow_null and c == 0:
                ins.append((ALU64 | MOV | K, reg, 0, 0, 0))
                return
            if c == 1:  # an arbitrary address (outside the arena, unaligned)
                ins.extend(ld_imm64(reg, self.val64()))
                self.inexact = True
                return
            rel.append((len(ins), "arena", ARENA_MAP,
                        r.randrange(self.npages) * PAGE + (r.randrange(1, PAGE) if c == 2 else 0)))
            ins.extend(ld_imm64(reg, 0))
            if r.randrange(2):
                ins.append((ALU64 | MOV | X, reg, reg, 1, 1))  # kernel form

        cnt = r.choice((0, 1, 1, 1, 2, 3, self.npages, self.npages + 1))
        if which <= 1:
            name = "bpf_arena_alloc_pages"
            addr_arg(2, True)
            ins.append((ALU64 | MOV | K, 3, 0, 0, cnt))
            ins.append((ALU64 | MOV | K, 4, 0, 0, NUMA_NO_NODE if r.randrange(4) else 0))
            ins.append((ALU64 | MOV | K, 5, 0, 0, 0))
        elif which <= 3:
            name = "bpf_arena_free_pages"
            addr_arg(2, True)
            ins.append((ALU64 | MOV | K, 3, 0, 0, cnt))
        else:
            name = "bpf_arena_reserve_pages"
            addr_arg(2, True)
            ins.append((ALU64 | MOV | K, 3, 0, 0, cnt))
        rel.append((len(ins), "kfunc", name, 0))
        ins.append((JMP | CALL, 0, 2, 0, 0))
        if name == "bpf_arena_alloc_pages":
            ins.append((ALU64 | MOV | X, 0, 0, 1, 0x10000))  # cast_user: a scalar
        elif name == "bpf_arena_free_pages":
            ins.append((ALU64 | MOV | K, 0, 0, 0, self.imm32()))  # void: r0 is not readable
        return Snippet(ins, rel, name)

    def reinit_after_call(self) -> list[Stmt]:
        out: list[Stmt] = []
        for reg in range(1, 6):
            if reg in self.ptrs:
                out.append(self.set_ptr(reg))
            else:
                out.append(self.set_scalar(reg))
        return out

    # -- body ------------------------------------------------------------------------------
    def block(self, n: int, depth: int) -> list[Stmt]:
        out: list[Stmt] = []
        while n > 0 and self.budget > 0:
            n -= 1
            self.budget -= 1
            c = self.r.randrange(100)
            if c < 12 and depth < self.cfg.max_depth:
                out.append(self.if_stmt(depth))
            elif c < 14 and self.cfg.kfuncs:
                out.append(self.kfunc_call())
                out.extend(self.reinit_after_call())
            else:
                out.append(self.simple())
        return out

    def if_stmt(self, depth: int) -> If:
        r = self.r
        cls = r.choice((JMP, JMP32))
        op = r.choice(COND_OPS)
        dst = r.choice(self.scalars)
        if r.randrange(2):
            cond = (cls | op | K, dst, 0, 0, self.imm32())
        else:
            cond = (cls | op | X, dst, r.choice(self.scalars), 0, 0)
        then = self.block(r.randint(1, 6), depth + 1)
        orelse = self.block(r.randint(1, 6), depth + 1) if r.randrange(2) else None
        return If(cond, then, orelse, long_ja=bool(r.randrange(4) == 0))

    def simple(self) -> Snippet:
        c = self.r.randrange(100)
        if c < 34:
            return self.alu()
        if c < 40:
            return Snippet(ld_imm64(self.r.choice(self.scalars), self.val64()), what="const")
        if c < 52:
            return self.stack_op()
        if c < 78:
            return self.arena_op()
        if c < 92:
            return self.ptr_op()
        return self.cast_op()

    def alu(self) -> Snippet:
        r = self.r
        dst = r.choice(self.scalars)
        cls = r.choice((ALU, ALU64))
        width = 64 if cls == ALU64 else 32
        c = r.randrange(100)
        if c < 8:
            return Snippet([(cls | NEG | K, dst, 0, 0, 0)])
        if c < 16:
            if r.randrange(3) == 0:
                return Snippet([(ALU64 | END | K, dst, 0, 0, r.choice((16, 32, 64)))], what="bswap")
            return Snippet([(ALU | END | r.choice((K, X)), dst, 0, 0, r.choice((16, 32, 64)))])
        if c < 26:  # mov / movsx
            src = r.choice(self.scalars)
            if r.randrange(2):
                off = r.choice((8, 16, 32) if cls == ALU64 else (8, 16))
                return Snippet([(cls | MOV | X, dst, src, off, 0)], what="movsx")
            if r.randrange(2):
                return Snippet([(cls | MOV | X, dst, src, 0, 0)])
            return Snippet([(cls | MOV | K, dst, 0, 0, self.imm32())])
        op = r.choice(BIN_OPS)
        signed = op in (DIV, MOD) and r.randrange(2)
        if r.randrange(2):  # immediate
            imm = self.imm32()
            if op in (LSH, RSH, ARSH):
                imm = r.randrange(width)
            elif op in (DIV, MOD) and imm == 0:
                imm = r.choice((1, -1, 3, 0x7FFFFFFF, -0x80000000))  # the verifier refuses / 0
            return Snippet([(cls | op | K, dst, 0, int(signed), imm)])
        src = r.choice(self.scalars)
        ins: list[Raw] = []
        if op in (LSH, RSH, ARSH) and not (self.cfg.unmasked_shifts and r.randrange(2)):
            ins.append((cls | AND | K, src, 0, 0, width - 1))
        ins.append((cls | op | X, dst, src, int(signed), 0))
        return Snippet(ins)

    def stack_op(self) -> Snippet:
        r = self.r
        size = r.choice((1, 2, 4, 8))
        off = -r.randrange(1, self.stack_size // size + 1) * size
        sz = SIZES[size]
        c = r.randrange(100)
        reg = r.choice(self.scalars)
        if c < 30:
            mode = MEMSX if size < 8 and r.randrange(3) == 0 else MEM
            return Snippet([(LDX | mode | sz, reg, FP, off, 0)], what="stack load")
        if c < 55:
            return Snippet([(STX | MEM | sz, FP, reg, off, 0)], what="stack store")
        if c < 70:
            return Snippet([(ST | MEM | sz, FP, 0, off, self.imm32())], what="stack st")
        if c < 80 and self.cfg.acq_rel:
            if r.randrange(2):
                return Snippet(self.scrub(off) + [(STX | ATOMIC | sz, reg, FP, off, A_LOAD_ACQ)],
                               what="ld_acq")
            return Snippet([(STX | ATOMIC | sz, FP, reg, off, A_STORE_REL)], what="st_rel")
        size = r.choice((4, 8))
        off = -r.randrange(1, self.stack_size // size + 1) * size
        op = r.choice((ADD, OR, AND, XOR, ADD | A_FETCH, OR | A_FETCH, AND | A_FETCH,
                       XOR | A_FETCH, A_XCHG, A_CMPXCHG))
        pre: list[Raw] = self.scrub(off) if op & A_FETCH else []
        if op == A_CMPXCHG and size == 4 and not self.cfg.cmpxchg32_r0_upper:
            pre.append((ALU | MOV | X, 0, 0, 0, 0))
        return Snippet(pre + [(STX | ATOMIC | SIZES[size], FP, reg, off, op)],
                       what="stack atomic")

    def scrub(self, off: int) -> list[Raw]:
        """A 1-byte store into the 8-byte stack slot holding `off`: the verifier then sees the
        slot as unknown data (see GenConfig.stack_fetch_known_slot)."""
        if self.cfg.stack_fetch_known_slot:
            return []
        return [(ST | MEM | B, FP, 0, off - off % 8 + self.r.randrange(8),
                 self.r.randint(1, 255))]

    def arena_off(self, align: int) -> int:
        r = self.r
        c = r.randrange(10)
        if c < 6:
            off = r.randrange(-512, 512)
        elif c < 9:
            off = r.randrange(-8 * PAGE, 8 * PAGE)
        else:
            off = r.randrange(-0x8000, 0x8000)
        return max(-0x8000, min(0x7FFF, off - off % align))

    def arena_op(self) -> Snippet:
        r = self.r
        p = r.choice(self.ptrs)
        size = r.choice((1, 2, 4, 8))
        sz = SIZES[size]
        reg = r.choice(self.scalars)
        c = r.randrange(100)
        pre: list[Raw] = []
        if c < 55:
            aligned = not (self.cfg.misaligned_arena and r.randrange(3) == 0)
            if aligned:
                pre.append((ALU64 | AND | K, p, 0, 0, -8))
            off = self.arena_off(size if aligned else 1)
            if c < 25:
                mode = MEMSX if size < 8 and r.randrange(3) == 0 else MEM
                return Snippet(pre + [(LDX | mode | sz, reg, p, off, 0)], what="arena load")
            if c < 45:
                if self.cfg.store_ptrs and r.randrange(8) == 0:
                    reg = r.choice(self.ptrs)
                return Snippet(pre + [(STX | MEM | sz, p, reg, off, 0)], what="arena store")
            return Snippet(pre + [(ST | MEM | sz, p, 0, off, self.imm32())], what="arena st")
        pre.append((ALU64 | AND | K, p, 0, 0, -8))
        if c < 65 and (self.cfg.arena_load_acquire or self.cfg.arena_store_release):
            off = self.arena_off(size)
            if self.cfg.arena_load_acquire and (r.randrange(2) or not
                                                self.cfg.arena_store_release):
                return Snippet(pre + [(STX | ATOMIC | sz, reg, p, off, A_LOAD_ACQ)], what="ld_acq")
            return Snippet(pre + [(STX | ATOMIC | sz, p, reg, off, A_STORE_REL)], what="st_rel")
        size = r.choice((4, 8))
        off = self.arena_off(size)
        op = r.choice((ADD, OR, AND, XOR, ADD | A_FETCH, A_XCHG, A_CMPXCHG))
        if op == A_CMPXCHG and size == 4 and not self.cfg.cmpxchg32_r0_upper:
            pre.append((ALU | MOV | X, 0, 0, 0, 0))
        if op in (ADD | A_FETCH, A_XCHG) and size == 4 and not self.cfg.fetch32_arena_upper:
            pre.append((ALU | MOV | X, reg, reg, 0, 0))
        return Snippet(pre + [(STX | ATOMIC | SIZES[size], p, reg, off, op)], what="arena atomic")

    def ptr_op(self) -> Snippet:
        r = self.r
        p = r.choice(self.ptrs)
        c = r.randrange(100)
        if c < 35 or not self.cfg.ptr_alu:
            return self.set_ptr(p, r.choice(self.scalars) if r.randrange(2) else None)
        if c < 45:
            q = r.choice(self.ptrs)
            return Snippet([(ALU64 | MOV | X, p, q, 0, 0)], what="ptr mov")
        if c < 55:  # a pointer from an arbitrary scalar
            s = r.choice(self.scalars)
            return Snippet([(ALU64 | MOV | X, p, s, 1, 1)], what="cast_kern scalar")
        cls = r.choice((ALU64, ALU64, ALU))
        if c < 80:  # small moves: add/sub of an immediate
            return Snippet([(cls | r.choice((ADD, SUB)) | K, p, 0, 0,
                             r.randrange(-3 * PAGE, 3 * PAGE))], what="ptr +=")
        op = r.choice(BIN_OPS)
        if r.randrange(2):
            imm = self.imm32()
            if op in (LSH, RSH, ARSH):
                imm = r.randrange(32)  # ALU64 on a pointer runs as ALU32: keep counts < 32
            elif op in (DIV, MOD) and imm == 0:
                imm = 7
            return Snippet([(cls | op | K, p, 0, 0, imm)], what="ptr alu")
        s = r.choice(self.scalars)
        return Snippet([(cls | op | X, p, s, 0, 0)], what="ptr alu")

    def cast_op(self) -> Snippet:
        r = self.r
        s = r.choice(self.scalars)
        c = r.randrange(3)
        if c == 0:
            return Snippet([(ALU64 | MOV | X, s, r.choice(self.ptrs), 1, 0x10000)], what="cast_user")
        if c == 1:
            return Snippet([(ALU64 | MOV | X, s, r.choice(self.scalars), 1, 0x10000)],
                           what="cast_user scalar")
        return Snippet([(ALU | MOV | X, s, r.choice(self.ptrs), 0, 0)], what="w = wptr")

    # -- epilogue --------------------------------------------------------------------------
    def epilogue(self, prep: ArenaPrep) -> list[Stmt]:
        """Store r0..r9 and the stack area into the result page; fold scalars into r0."""
        ins: list[Raw] = []
        rel: list[Reloc] = []
        ins.append((STX | MEM | DW, FP, 9, -self.stack_size - 8, 0))  # below the area
        rel.append((len(ins), "arena", ARENA_MAP, prep.result_page * PAGE))
        ins.extend(ld_imm64(9, 0))
        ins.append((ALU64 | MOV | X, 9, 9, 1, 1))
        for reg in range(9):
            ins.append((STX | MEM | DW, 9, reg, 8 * reg, 0))
        ins.append((LDX | MEM | DW, 1, FP, -self.stack_size - 8, 0))
        ins.append((STX | MEM | DW, 9, 1, 72, 0))
        for i, o in enumerate(range(8, self.stack_size + 1, 8)):
            ins.append((LDX | MEM | DW, 1, FP, -o, 0))
            ins.append((STX | MEM | DW, 9, 1, 80 + 8 * i, 0))
        for reg in self.scalars:
            if reg not in (0, 1, 9):
                ins.append((ALU64 | XOR | X, 0, reg, 0, 0))
        ins.append((ALU64 | MOV | X, 1, 0, 0, 0))
        ins.append((ALU64 | RSH | K, 1, 0, 0, 32))
        ins.append((ALU64 | XOR | X, 0, 1, 0, 0))
        ins.append((JMP | EXIT, 0, 0, 0, 0))
        return [Snippet(ins, rel, "epilogue")]


def generate(rng: Any, cfg: GenConfig | None = None, name: str = "prog") -> GenProgram:
    """One random program; `rng` offers random.Random's methods (random, randrange, ...)."""
    return _Gen(rng, cfg or GenConfig(), name).program()


def seeded(seed: int, cfg: GenConfig | None = None, name: str | None = None) -> GenProgram:
    """The plain, reproducible generator for long runs."""
    p = generate(_random.Random(seed), cfg, name or f"p{seed & 0xFFFFFFFF:x}")
    p.seed = seed
    return p


def object_spec(progs: list[GenProgram], npages: int | None = None, map_extra: int = 0) -> Any:
    """One ObjectSpec holding `progs` and one arena map of `npages` (default: the largest)."""
    from bpfarena.obj.spec import MapSpec, ObjectSpec

    n = npages or max(p.npages for p in progs)
    arena = MapSpec(name=ARENA_MAP, type=MAP_TYPE_ARENA, max_entries=n, flags=BPF_F_MMAPABLE,
                    map_extra=map_extra)
    spec = ObjectSpec(maps={ARENA_MAP: arena}, arena_map=ARENA_MAP)
    for p in progs:
        spec.programs[p.name] = p.program_spec()
    return spec


def programs(cfg: GenConfig | None = None) -> Any:
    """A hypothesis strategy of GenProgram: every choice of the generator is a hypothesis draw.

    A program takes several hundred draws, so an example holds at most two of these before
    hypothesis's per-example data limit makes it invalid; `batches` adds seeded programs."""
    from hypothesis import strategies as st

    return st.builds(lambda rng: generate(rng, cfg), st.randoms(use_true_random=False))


def seeded_programs(cfg: GenConfig | None = None) -> Any:
    """A hypothesis strategy of GenProgram from a drawn seed (one draw per program)."""
    from hypothesis import strategies as st

    return st.builds(lambda s: seeded(s, cfg), st.integers(0, (1 << 63) - 1))


def batches(cfg: GenConfig | None = None, drawn: int = 2, seeded_: int = 18) -> Any:
    """Lists of `drawn` fully hypothesis-drawn programs plus `seeded_` seeded ones, to load as
    one object (loading an object costs far more than one more program in it)."""
    from hypothesis import strategies as st

    return st.tuples(st.lists(programs(cfg), min_size=drawn, max_size=drawn),
                     st.lists(seeded_programs(cfg), min_size=seeded_, max_size=seeded_)
                     ).map(lambda t: t[0] + t[1])


# --- running a program on both back ends ------------------------------------------------------
@dataclass
class Outcome:
    """What one run left behind: retval, resident page count and the arena bytes."""

    retval: int
    resident: int | None
    data: bytes
    error: str | None = None


@dataclass
class Mismatch:
    program: GenProgram
    kernel: Outcome
    vm: Outcome
    user_vm_start: int

    def describe(self, limit: int = 12) -> str:
        return describe(self.program, self.kernel, self.vm, self.user_vm_start, limit)


def disasm(p: GenProgram) -> list[str]:
    """The program as text (the project's disassembler where it exists)."""
    raw, rel = p.lower()
    notes = {i: f"   ; reloc {k} {t}+{o:#x}" for i, k, t, o in rel}
    try:
        from bpfarena.isa.disasm import disassemble
        from bpfarena.isa.insn import Instruction

        lines = list(disassemble([Instruction(*t) for t in raw]))
    except Exception:  # the disassembler is not what is under test here
        lines = [f"{i}: {t}" for i, t in enumerate(raw)]
    if len(lines) == len(raw):
        return [f"{i:4}: {ln}{notes.get(i, '')}" for i, ln in enumerate(lines)]
    out = []
    for ln in lines:  # lines that start with their slot index ("12: ...")
        head = ln.split(":", 1)[0].strip()
        out.append(ln + notes.get(int(head), "") if head.isdigit() else ln)
    return out


def describe(p: GenProgram, k: Outcome, v: Outcome, start: int, limit: int = 12) -> str:
    out = [f"program {p.name} (seed {p.seed!r}), {p.npages} pages, user_vm_start {start:#x}, "
           f"stack {p.stack_size}, pointer regs from the epilogue dump"]
    if k.error or v.error:
        out.append(f"  errors: kernel={k.error!r} vm={v.error!r}")
    if k.retval != v.retval:
        out.append(f"  retval: kernel={k.retval:#x} vm={v.retval:#x}")
    if k.resident != v.resident and p.resident_exact:
        out.append(f"  resident pages: kernel={k.resident} vm={v.resident}")
    res = p.prep.result_page * PAGE
    kd, vd = k.data, v.data
    if kd and vd:
        for reg in range(10):
            a = int.from_bytes(kd[res + 8 * reg:res + 8 * reg + 8], "little")
            b = int.from_bytes(vd[res + 8 * reg:res + 8 * reg + 8], "little")
            if a != b:
                out.append(f"  r{reg} at exit: kernel={a:#x} vm={b:#x}")
        shown = 0
        for pg in range(min(len(kd), len(vd)) // PAGE):
            a, b = kd[pg * PAGE:(pg + 1) * PAGE], vd[pg * PAGE:(pg + 1) * PAGE]
            if a == b:
                continue
            diffs = [i for i in range(PAGE) if a[i] != b[i]]
            what = "result page" if pg == p.prep.result_page else "page"
            out.append(f"  {what} {pg} (user {start + pg * PAGE:#x}): {len(diffs)} bytes differ, "
                       f"first at +{diffs[0]:#x}")
            for o in sorted({i - i % 8 for i in diffs})[:4]:
                out.append(f"    +{o:#05x}: kernel={a[o:o + 8].hex()} vm={b[o:o + 8].hex()}")
            shown += 1
            if shown >= limit:
                break
    out.append("  prepared pages: " + ", ".join(str(i) for i in sorted(p.prep.pages))
               + f"; result page {p.prep.result_page}")
    out += disasm(p)
    return "\n".join(out)


def reset_arena(arena: Any, npages: int) -> None:
    arena.free_pages(arena.user_vm_start, npages)


def prepare(arena: Any, p: GenProgram) -> None:
    start = arena.user_vm_start
    for i in sorted(set(p.prep.pages) | {p.prep.result_page}):
        arena.alloc_pages(1, addr=start + i * PAGE)
        data = p.prep.pages.get(i)
        if data and any(data):
            arena.write(start + i * PAGE, data)


def run_one(obj: Any, p: GenProgram, npages: int) -> Outcome:
    """Reset the arena, write the prepared pages, run, and read every page back."""
    arena = obj.arena
    reset_arena(arena, npages)
    prepare(arena, p)
    try:
        res = obj.programs[p.name].run()
        err = None
        retval = res.retval & 0xFFFFFFFF
    except Exception as e:  # reported as a difference, with the program
        err, retval = f"{type(e).__name__}: {e}", -1
    resident = arena.resident_pages()
    data = arena.read(arena.user_vm_start, npages * PAGE)
    return Outcome(retval, resident, data, err)


def same(a: Outcome, b: Outcome, p: GenProgram | None = None) -> bool:
    """Equal outcomes. The resident count is skipped where it cannot be compared: the kernel
    back end probes only the arena's own pages, so it misses pages the kernel hands out outside
    the arena (after a free below user_vm_start the kernel's free-page tree holds pages outside
    the arena, and a later allocation can return them; the VM emulates that and counts them)."""
    skip = p is not None and not p.resident_exact
    return ((a.retval, a.data, a.error) == (b.retval, b.data, b.error)
            and (skip or a.resident == b.resident))


class Differ:
    """Loads batches of generated programs on the kernel and the VM and compares every run."""

    def __init__(self, npages: int = 24) -> None:
        self.npages = npages
        self.programs_run = 0
        self.slots_run = 0

    def load(self, progs: list[GenProgram]) -> tuple[Any, Any]:
        import bpfarena

        spec = object_spec(progs, self.npages)
        kobj = bpfarena.load(spec, backend="kernel")
        try:
            vobj = bpfarena.load(spec, backend="vm", user_vm_start=kobj.arena.user_vm_start)
        except BaseException:
            kobj.close()
            raise
        return kobj, vobj

    def check(self, progs: list[GenProgram]) -> list[Mismatch]:
        kobj, vobj = self.load(progs)
        bad = []
        try:
            exact = True  # pages outside the arena outlive the reset between programs
            for p in progs:
                k = run_one(kobj, p, self.npages)
                v = run_one(vobj, p, self.npages)
                self.programs_run += 1
                if not exact:
                    k.resident = v.resident = None
                exact = exact and p.resident_exact
                if not same(k, v, p):
                    bad.append(Mismatch(p, k, v, kobj.arena.user_vm_start))
        finally:
            vobj.close()
            kobj.close()
        return bad

    def differs(self, p: GenProgram) -> bool:
        try:
            return bool(self.check([p]))
        except Exception:  # a shrunk program the verifier refuses does not count
            return False

    def shrink(self, p: GenProgram, budget: int = 400) -> GenProgram:
        """Greedy delta debugging: drop body statements and prepared pages while it still
        differs."""
        changed = True
        while changed and budget > 0:
            changed = False
            cands = [("body", x) for x in sorted(stmt_paths(p.body), key=len)]
            cands += [("preamble", (i,)) for i in range(len(p.preamble) - 1, -1, -1)
                      if p.preamble[i].what.startswith(("bpf_arena", "keep"))]
            for part, path in cands:
                budget -= 1
                try:
                    q = p.without(path, part)
                except (IndexError, AssertionError):
                    continue
                if self.differs(q):
                    p, changed = q, True
                    break
                if budget <= 0:
                    break
            if not changed:
                for pg in sorted(p.prep.pages):
                    budget -= 1
                    pages = dict(p.prep.pages)
                    del pages[pg]
                    q = replace(p, prep=ArenaPrep(pages, p.prep.result_page))
                    if self.differs(q):
                        p, changed = q, True
                        break
        return p


def main(argv: list[str] | None = None) -> int:
    """Long runs: `python3 tests/proggen.py --count 200000 [--seed S] [--batch 50]`."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--max-report", type=int, default=5)
    a = ap.parse_args(argv)
    cfg = GenConfig(max_pages=a.pages)
    d = Differ(a.pages)
    t0 = time.time()
    found = 0
    done = 0
    while done < a.count:
        n = min(a.batch, a.count - done)
        progs = [seeded(a.seed + done + i, cfg, f"p{done + i}") for i in range(n)]
        for m in d.check(progs):
            found += 1
            if found <= a.max_report:
                small = d.shrink(m.program)
                k = run_once(d, small)
                print(f"--- difference (original seed {m.program.seed}), shrunk:")
                print(describe(small, *k) if k else m.describe())
        done += n
        if done % (a.batch * 20) == 0 or done == a.count:
            el = time.time() - t0
            print(f"{done} programs, {found} differences, {el:.0f} s ({done / el:.0f}/s)",
                  flush=True)
    return 1 if found else 0


def run_once(d: Differ, p: GenProgram) -> tuple[Outcome, Outcome, int] | None:
    kobj, vobj = d.load([p])
    try:
        return run_one(kobj, p, d.npages), run_one(vobj, p, d.npages), kobj.arena.user_vm_start
    finally:
        vobj.close()
        kobj.close()


if __name__ == "__main__":
    import sys

    sys.exit(main())
