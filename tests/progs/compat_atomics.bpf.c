// SPDX-License-Identifier: MIT
/* Selftest-compat: what the kernel's arena_atomics selftest object relies on, written anew:
 * - SEC("raw_tp/...") programs run through BPF_PROG_TEST_RUN, each gated on the caller's pid
 *   (bpf_get_current_pid_tgid() >> 32 == `pid`, which user space sets in .bss after loading);
 * - __sync_* atomics, with and without fetch, 32 and 64 bit, signed, on __arena_global variables
 *   and on the stack; a `volatile` arena global;
 * - load-acquire / store-release (BPF_ATOMIC with imm 0x100 / 0x110) as raw `.8byte`
 *   instructions on arena globals reached by `r = <global> ll` and an explicit addr_space_cast.
 * Contract: every program returns 0; the values after each are listed in the Python test.
 */
#include "bpfarena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

__u32 pid;
bool ran_checks __attribute__((section(".data"))) = false;

static __always_inline bool mine(void)
{
	return pid == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

__u64 __arena_global a64 = 10;
__u64 __arena_global a64_old;
__u32 __arena_global a32 = 10;
__u32 __arena_global a32_old;
__s64 __arena_global s64v = 1;
__s64 __arena_global s64_old;
__u64 __arena_global stack_copy;
__u64 __arena_global stack_old;
volatile __u64 __arena_global steps;

SEC("raw_tp/sys_enter")
int fetch_ops(const void *ctx)
{
	__u64 on_stack = 5;

	if (!mine())
		return 0;
	a64_old = __sync_fetch_and_add(&a64, 5);       /* 10 -> 15, old 10 */
	a32_old = __sync_fetch_and_sub(&a32, 3);       /* 10 -> 7, old 10 */
	s64_old = __sync_fetch_and_sub(&s64v, 3);      /* 1 -> -2, old 1 */
	stack_old = __sync_fetch_and_add(&on_stack, 4); /* 5 -> 9, old 5 */
	stack_copy = on_stack;
	steps = 1;
	steps += 1;
	ran_checks = true;
	return 0;
}

__u64 __arena_global m64 = 0xf0f0ull << 32;
__u32 __arena_global m32 = 0xf0f0;
__u64 __arena_global cx64 = 7;
__u64 __arena_global cx64_fail;
__u64 __arena_global cx64_ok;
__u32 __arena_global xc32 = 3;
__u32 __arena_global xc32_old;

SEC("raw_tp/sys_enter")
int bit_ops(const void *ctx)
{
	if (!mine())
		return 0;
	__sync_fetch_and_and(&m64, 0x0ff0ull << 32);   /* 0x00f0 << 32 */
	__sync_fetch_and_or(&m32, 0x000f);             /* 0xf0ff */
	__sync_fetch_and_xor(&m32, 0xff00);            /* 0x0fff */
	cx64_fail = __sync_val_compare_and_swap(&cx64, 1, 9); /* no swap: 7 */
	cx64_ok = __sync_val_compare_and_swap(&cx64, 7, 8);   /* swap: old 7, now 8 */
	xc32_old = __sync_lock_test_and_set(&xc32, 4);        /* old 3, now 4 */
	return 0;
}

/* BPF_STX | size | BPF_ATOMIC, regs (src << 4) | dst, off 0, imm = op */
#define ATOMIC_INSN(size, op, dst, src)                                                    \
	((__u64)(0xc3 | (size)) | ((__u64)(((src) << 4) | (dst)) << 8) | ((__u64)(op) << 32))
#define SZ_B 0x10
#define SZ_H 0x08
#define SZ_W 0x00
#define SZ_DW 0x18
#define OP_LOAD_ACQ 0x100
#define OP_STORE_REL 0x110

__u16 __arena_global acq16_src = 0xbeef;
__u64 __arena_global acq64_src = 0x0123456789abcdefull;
__u16 __arena_global acq16_dst;
__u64 __arena_global acq64_dst;
__u8 __arena_global rel8_dst;
__u32 __arena_global rel32_dst;

/* r2 = load_acquire((SIZE *)src); *(SIZE *)dst = r2 */
#define ACQUIRE_COPY(SZ, CTYPE, SRC, DST)                                                  \
	asm volatile("r1 = %[src] ll\n"                                                    \
		     "r1 = addr_space_cast(r1, 0x0, 0x1)\n"                                \
		     ".8byte %[insn]\n"                                                    \
		     "r3 = %[dst] ll\n"                                                    \
		     "r3 = addr_space_cast(r3, 0x0, 0x1)\n"                                \
		     "*(" #CTYPE " *)(r3 + 0) = r2\n"                                      \
		     :                                                                     \
		     : [src] "i"(&SRC), [dst] "i"(&DST),                                   \
		       [insn] "i"(ATOMIC_INSN(SZ, OP_LOAD_ACQ, 2, 1))                      \
		     : "r1", "r2", "r3", "memory")

/* store_release((SIZE *)dst, VAL) */
#define RELEASE_STORE(SZ, DST, VAL)                                                        \
	asm volatile("r1 = " VAL "\n"                                                      \
		     "r2 = %[dst] ll\n"                                                    \
		     "r2 = addr_space_cast(r2, 0x0, 0x1)\n"                                \
		     ".8byte %[insn]\n"                                                    \
		     :                                                                     \
		     : [dst] "i"(&DST), [insn] "i"(ATOMIC_INSN(SZ, OP_STORE_REL, 2, 1))      \
		     : "r1", "r2", "memory")

SEC("raw_tp/sys_enter")
int acquire_release(const void *ctx)
{
	if (!mine())
		return 0;
	ACQUIRE_COPY(SZ_H, u16, acq16_src, acq16_dst);
	ACQUIRE_COPY(SZ_DW, u64, acq64_src, acq64_dst);
	RELEASE_STORE(SZ_B, rel8_dst, "0x5a");
	RELEASE_STORE(SZ_W, rel32_dst, "0x76543210");
	return 0;
}

char _license[] SEC("license") = "GPL";
