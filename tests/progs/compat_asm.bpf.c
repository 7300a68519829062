// SPDX-License-Identifier: MIT
/* Selftest-compat: the *_asm build style of the kernel's arena selftests, written anew.
 * Build with -DBPFARENA_FORCE_ASM: __arena is empty, so arena pointers are plain pointers kept
 * in ordinary .bss statics, and every cast is an addr_space_cast emitted as raw bytes (the way
 * headers do it for compilers without the `addr_space_cast` mnemonic). Objects come from
 * weak global subprograms whose arena arguments carry the "arg:arena" decl tag.
 *
 * Contract (checked from Python):
 * - before the run, user space writes 0x55aa at the start of the arena globals area;
 *   `seen_first` gets what the program read back there (0x55aa);
 * - build() returns 0, `head_for_user` is the user address of a chain of `nodes` nodes whose
 *   values are 0..nodes-1 newest first, `chain_sum` is their sum, and every `next` field holds a
 *   user-form pointer (or 0 at the end);
 * - `slot_ptrs[i]` (.bss, not the arena) hold the user address of the page each slot used.
 */
#include "bpfarena.h"

#if !defined(BPFARENA_FORCE_ASM)
#error "build compat_asm.bpf.c with -DBPFARENA_FORCE_ASM"
#endif

/* no map_extra: the kernel picks the address at the first mmap */
struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32);
} arena SEC(".maps");

/* rX = addr_space_cast(rX, dst_as, src_as) as bytes: opcode 0xbf, dst = src = the register the
 * compiler chose (matched by name with .irp/.ifc), off 1, imm (dst_as << 16) | src_as. */
#define compat_raw_cast(var, dst_as, src_as)                                               \
	asm volatile(".irp n,0,1,2,3,4,5,6,7,8,9\n"                                        \
		     ".ifc %[reg],r\\n\n"                                                  \
		     ".byte 0xbf, (\\n << 4) | \\n\n"                                     \
		     ".endif\n"                                                            \
		     ".endr\n"                                                             \
		     ".short 1\n"                                                          \
		     ".long %[as]\n"                                                       \
		     : [reg] "+r"(var)                                                     \
		     : [as] "i"(((dst_as) << 16) | (src_as)))
#define to_kern(p) compat_raw_cast(p, 0, 1)
#define to_user(p) compat_raw_cast(p, 1, 0)

struct cnode {
	struct cnode *next; /* user form */
	__u64 value;
};

/* one arena global, so that the globals area starts at a known place */
__u32 __arena_global first_word;

#define SLOTS 4
static void *slot_pages[SLOTS]; /* .bss: kernel-form page pointers, as the asm flavour keeps them */
static __u32 slot_used[SLOTS];
__u64 slot_ptrs[SLOTS];
__u64 head_for_user;
__u64 chain_sum;
__u32 seen_first;
int nodes = 50;

/* carve 16 bytes from slot `s`'s page, refilling it from the arena; the user address, or 0
 * (a global function may only return a scalar) */
__weak __u64 compat_new_node(__u32 s)
{
	void *page;
	__u32 used;

	if (s >= SLOTS)
		return 0;
	page = slot_pages[s];
	used = slot_used[s];
	if (!page || used + sizeof(struct cnode) > PAGE_SIZE) {
		page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!page)
			return 0;
		slot_ptrs[s] = (__u64)page;
		to_kern(page);
		slot_pages[s] = page;
		used = 0;
	}
	slot_used[s] = used + sizeof(struct cnode);
	page = (char *)page + used;
	to_user(page);
	return (__u64)page;
}

/* push `n` (user form) on the chain whose head (user form) is *head; returns the new head */
__weak __u64 compat_push(struct cnode *n __arg_arena, __u64 head, __u64 value)
{
	to_kern(n);
	n->next = (struct cnode *)head;
	n->value = value;
	to_user(n);
	return (__u64)n;
}

SEC("syscall")
int build(void *ctx)
{
	__u32 *fw = &first_word;
	__u64 head = 0;
	int i;

	to_kern(fw);
	seen_first = *fw;
	for (i = 0; i < nodes && i < 512; i++) {
		struct cnode *n = (struct cnode *)compat_new_node(i % SLOTS);

		if (!n)
			return 1;
		head = compat_push(n, head, i);
		chain_sum += i;
	}
	head_for_user = head;
	return 0;
}

char _license[] SEC("license") = "GPL";
