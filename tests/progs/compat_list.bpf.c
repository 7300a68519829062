// SPDX-License-Identifier: MIT
/* Selftest-compat: what the kernel's arena_list selftest object relies on, written anew with
 * clang's native arena address space:
 * - an arena at a fixed address given by __ulong(map_extra, 1 << 44) (the x86 choice there);
 * - initialised and zeroed arena globals (.addr_space.1), one a struct whose address the program
 *   stores into a .bss pointer;
 * - a flag forced into .data with a section attribute, counters in .bss;
 * - bounded loops written with may_goto: the `may_goto` mnemonic in push_all and the raw opcode
 *   0xe5 in pop_all (the encoding headers use for assemblers that lack the mnemonic).
 *
 * Contract: set `cnt`, run push_all (returns 0): the list at `list_head` (== &list_root) holds
 * cnt-1 .. 0 newest first, `arena_total` == cnt*(cnt-1)/2 and `arena_count` == 1 + cnt, and
 * `pages_taken` == ceil(cnt / 128). Then pop_all (returns 0) empties it and `popped_sum` and
 * `arena_total` are cnt*(cnt-1)/2 again.
 */
#include "bpfarena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 64);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

/* may_goto: a jump the verifier takes once its loop budget is spent */
#define loop_budget_ok()                                                                   \
	({                                                                                 \
		__label__ out, done;                                                       \
		bool ok_ = true;                                                           \
		asm volatile goto("may_goto %l[out]" :::: out);                            \
		goto done;                                                                 \
	out:                                                                               \
		ok_ = false;                                                               \
	done:                                                                              \
		ok_;                                                                       \
	})

/* the same instruction as raw bytes: code 0xe5, regs 0, then off (the jump distance in
 * instructions, minus one) and imm 0. The assembler resolves the label difference only as a
 * 32-bit value, so off is written as the low half of a .long that spans off and imm's low half. */
#define loop_budget_ok_raw()                                                               \
	({                                                                                 \
		__label__ out, done;                                                       \
		bool ok_ = true;                                                           \
		asm volatile goto("1: .byte 0xe5, 0\n"                                     \
				  ".long ((%l[out] - 1b - 8) / 8) & 0xffff\n"               \
				  ".short 0\n" :::: out);                                  \
		goto done;                                                                 \
	out:                                                                               \
		ok_ = false;                                                               \
	done:                                                                              \
		ok_;                                                                       \
	})

struct item {
	struct item __arena *next;
	__u64 value;
	__u64 pad[2]; /* 32 bytes: 128 items per page */
};

struct root {
	struct item __arena *first;
};

struct root __arena list_root;
long __arena arena_total;
int __arena arena_count = 1;

struct root __arena *list_head;
int cnt;
int popped_sum;
__u32 pages_taken;
bool compat_skip __attribute__((section(".data"))) = false;

/* one page per 128 items, carved upward; the page pointer lives in the arena as well */
void __arena * __arena cur_page;
__u32 __arena cur_used;

static struct item __arena *take_item(void)
{
	void __arena *page = cur_page;
	__u32 used = cur_used;

	if (!page || used + sizeof(struct item) > PAGE_SIZE) {
		page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!page)
			return NULL;
		cur_page = page;
		used = 0;
		pages_taken++;
	}
	cur_used = used + sizeof(struct item);
	return (struct item __arena *)((char __arena *)page + used);
}

SEC("syscall")
int push_all(void *ctx)
{
	__u64 i;

	list_head = &list_root;
	for (i = 0; i < (__u64)cnt && loop_budget_ok(); i++) {
		struct item __arena *n = take_item();

		if (!n)
			return 1;
		n->value = i;
		n->next = list_head->first;
		list_head->first = n;
		arena_total += i;
		arena_count++;
	}
	return 0;
}

SEC("syscall")
int pop_all(void *ctx)
{
	struct item __arena *n;
	int sum = 0;

	arena_total = 0;
	while ((n = list_head->first) && loop_budget_ok_raw()) {
		list_head->first = n->next;
		sum += n->value;
		arena_total += n->value;
		n->next = NULL;
	}
	popped_sum = sum;
	return list_head->first ? 2 : 0;
}

char _license[] SEC("license") = "GPL";
