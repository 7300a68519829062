// SPDX-License-Identifier: MIT
/* arena_atomics: atomic operations on arena globals in a 10-page arena.
 * Contract (every program returns 0):
 *   add:     64/32-bit values 1, += 2 -> 3, fetch result 1; the same on a stack slot; the
 *            no-return form also ends at 3.
 *   sub:     64/32-bit values 1, -= 2 -> -1, fetch result 1; the no-return form ends at -1.
 *   and/or/xor: start 0x110 (0x110 << 32 for 64-bit), operand 0x011 (<< 32) -> 0x010, 0x111,
 *            0x101. The x86 JIT refuses fetch-and/or/xor on arena memory, so these use the
 *            no-fetch forms.
 *   cmpxchg: 64/32-bit value 1: (0 -> 3) fails and returns 1; (1 -> 2) succeeds and returns 1;
 *            final value 2.
 *   xchg:    64/32-bit value 1, exchange with 2 -> returns 1, final value 2.
 * Values live in the arena; fetch results in .bss. */
#include "bpfarena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 10);
} arena SEC(".maps");

__u64 __arena_global add64_value = 1;
__u32 __arena_global add32_value = 1;
__u64 __arena_global add_noreturn_value = 1;
__u64 add64_result;
__u32 add32_result;
__u64 add_stack_value_copy;
__u64 add_stack_result;

__s64 __arena_global sub64_value = 1;
__s32 __arena_global sub32_value = 1;
__s64 __arena_global sub_noreturn_value = 1;
__s64 sub64_result;
__s32 sub32_result;

__u64 __arena_global and64_value = 0x110ULL << 32;
__u32 __arena_global and32_value = 0x110;
__u64 __arena_global or64_value = 0x110ULL << 32;
__u32 __arena_global or32_value = 0x110;
__u64 __arena_global xor64_value = 0x110ULL << 32;
__u32 __arena_global xor32_value = 0x110;

__u64 __arena_global cmpxchg64_value = 1;
__u32 __arena_global cmpxchg32_value = 1;
__u64 cmpxchg64_result_fail;
__u64 cmpxchg64_result_succeed;
__u32 cmpxchg32_result_fail;
__u32 cmpxchg32_result_succeed;

__u64 __arena_global xchg64_value = 1;
__u32 __arena_global xchg32_value = 1;
__u64 xchg64_result;
__u32 xchg32_result;

SEC("syscall")
int add(void *ctx)
{
	__u64 stack = 1;

	add64_result = __sync_fetch_and_add(&add64_value, 2);
	add32_result = __sync_fetch_and_add(&add32_value, 2);
	add_stack_result = __sync_fetch_and_add(&stack, 2);
	add_stack_value_copy = stack;
	__sync_fetch_and_add(&add_noreturn_value, 2);
	return 0;
}

SEC("syscall")
int sub(void *ctx)
{
	sub64_result = __sync_fetch_and_sub(&sub64_value, 2);
	sub32_result = __sync_fetch_and_sub(&sub32_value, 2);
	__sync_fetch_and_sub(&sub_noreturn_value, 2);
	return 0;
}

SEC("syscall")
int and(void *ctx)
{
	__sync_fetch_and_and(&and64_value, 0x011ULL << 32);
	__sync_fetch_and_and(&and32_value, 0x011);
	return 0;
}

SEC("syscall")
int or(void *ctx)
{
	__sync_fetch_and_or(&or64_value, 0x011ULL << 32);
	__sync_fetch_and_or(&or32_value, 0x011);
	return 0;
}

SEC("syscall")
int xor(void *ctx)
{
	__sync_fetch_and_xor(&xor64_value, 0x011ULL << 32);
	__sync_fetch_and_xor(&xor32_value, 0x011);
	return 0;
}

SEC("syscall")
int cmpxchg(void *ctx)
{
	cmpxchg64_result_fail = __sync_val_compare_and_swap(&cmpxchg64_value, 0, 3);
	cmpxchg64_result_succeed = __sync_val_compare_and_swap(&cmpxchg64_value, 1, 2);
	cmpxchg32_result_fail = __sync_val_compare_and_swap(&cmpxchg32_value, 0, 3);
	cmpxchg32_result_succeed = __sync_val_compare_and_swap(&cmpxchg32_value, 1, 2);
	return 0;
}

SEC("syscall")
int xchg(void *ctx)
{
	xchg64_result = __sync_lock_test_and_set(&xchg64_value, 2);
	xchg32_result = __sync_lock_test_and_set(&xchg32_value, 2);
	return 0;
}

char _license[] SEC("license") = "GPL";
