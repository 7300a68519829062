/* Audit 2: argument edge cases of the arena kfuncs, and ALU64 on arena pointers in asm. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 16, 0);

__u64 __arena_global g0 = 0x1111;
__u64 kout[24];

static __always_inline __u64 A(void __arena *p)
{
	return (__u64)p;
}

SEC("syscall")
int kfunc_edges(void *ctx)
{
	char __arena *base = (char __arena *)&g0; /* page 0: the globals */
	char __arena *p;

	kout[0] = A(bpf_arena_alloc_pages(&arena, NULL, 0, NUMA_NO_NODE, 0));  /* 0 pages */
	kout[1] = A(bpf_arena_alloc_pages(&arena, NULL, 17, NUMA_NO_NODE, 0)); /* > max */
	kout[2] = A(bpf_arena_alloc_pages(&arena, NULL, 16, NUMA_NO_NODE, 0)); /* page 0 taken */
	kout[3] = A(bpf_arena_alloc_pages(&arena, NULL, 15, NUMA_NO_NODE, 0)); /* all the rest */
	if (kout[3])
		bpf_arena_free_pages(&arena, (void __arena *)kout[3], 15);
	kout[4] = A(bpf_arena_alloc_pages(&arena, base + PAGE_SIZE + 1, 1, NUMA_NO_NODE, 0));
	kout[5] = A(bpf_arena_alloc_pages(&arena, base + 16 * PAGE_SIZE, 1, NUMA_NO_NODE, 0));
	kout[6] = A(bpf_arena_alloc_pages(&arena, base - PAGE_SIZE, 1, NUMA_NO_NODE, 0));
	kout[7] = A(bpf_arena_alloc_pages(&arena, base + 15 * PAGE_SIZE, 2, NUMA_NO_NODE, 0));
	kout[8] = A(bpf_arena_alloc_pages(&arena, base + 15 * PAGE_SIZE, 1, NUMA_NO_NODE, 0));
	kout[9] = A(bpf_arena_alloc_pages(&arena, NULL, 1, 0, 0));    /* node 0 */
	kout[10] = 0; /* a node that does not exist: kfunc_missing_node, gated (docs/kernels.md) */
	/* a 32-bit form hint (no upper half) */
	kout[11] = A(bpf_arena_alloc_pages(&arena, (void __arena *)((__u64)(base + 8 * PAGE_SIZE) &
								    0xffffffffULL),
					    1, NUMA_NO_NODE, 0));
	/* free: 0 pages, unallocated pages, a range over allocated and free pages */
	p = bpf_arena_alloc_pages(&arena, base + 4 * PAGE_SIZE, 3, NUMA_NO_NODE, 0);
	kout[12] = A(p);
	if (!p)
		return 1;
	*(volatile __u64 __arena *)p = 1;
	*(volatile __u64 __arena *)(p + PAGE_SIZE) = 2;
	*(volatile __u64 __arena *)(p + 2 * PAGE_SIZE) = 3;
	bpf_arena_free_pages(&arena, p, 0);
	kout[13] = *(volatile __u64 __arena *)p;
	bpf_arena_free_pages(&arena, base + 12 * PAGE_SIZE, 2); /* nothing there */
	bpf_arena_free_pages(&arena, p + PAGE_SIZE, 3);         /* pages 5, 6 and free 7 */
	kout[14] = *(volatile __u64 __arena *)p;
	kout[15] = *(volatile __u64 __arena *)(p + PAGE_SIZE);
	kout[16] = *(volatile __u64 __arena *)(p + 2 * PAGE_SIZE);
	/* freeing through the 32-bit form */
	bpf_arena_free_pages(&arena, (void __arena *)((__u64)p & 0xffffffffULL), 1);
	kout[17] = *(volatile __u64 __arena *)p;
	/* reserve: 0 pages, past the end, a hint in 32-bit form */
	kout[18] = (__u64)(__s64)bpf_arena_reserve_pages(&arena, base + 10 * PAGE_SIZE, 0);
	kout[19] = (__u64)(__s64)bpf_arena_reserve_pages(&arena, base + 15 * PAGE_SIZE, 2);
	kout[20] = (__u64)(__s64)bpf_arena_reserve_pages(
		&arena, (void __arena *)((__u64)(base + 10 * PAGE_SIZE) & 0xffffffffULL), 1);
	kout[21] = A(bpf_arena_alloc_pages(&arena, base + 10 * PAGE_SIZE, 1, NUMA_NO_NODE, 0));
	kout[22] = g0;
	return 0;
}

/* NUMA nodes that do not exist. Kernels with the node-id check (7.1, 7.0.10, 6.18.33, 6.12.91)
 * return NULL; older ones oops in the page allocator, so the tests run this only where the
 * release is known to carry the fix (bpfarena.kernel.bugs.NODE_ID_OOPS). */
__u64 nout[4];

SEC("syscall")
int kfunc_missing_node(void *ctx)
{
	nout[0] = A(bpf_arena_alloc_pages(&arena, NULL, 1, 4096, 0));
	nout[1] = A(bpf_arena_alloc_pages(&arena, NULL, 1, -2, 0));
	nout[2] = A(bpf_arena_alloc_pages(&arena, NULL, 1, 0, 0)); /* node 0 is real */
	return 0;
}

/* ALU64 on a PTR_TO_ARENA register: the verifier makes it 32-bit */
__u64 aout[8];

SEC("syscall")
int asm_alu(void *ctx)
{
	__u64 r_val, r_ptr, r_user;

	asm volatile(
		"r1 = %[g] ll\n"
		"r2 = addr_space_cast(r1, 0, 1)\n"  /* kernel form: low 32 bits */
		"r3 = 0x100000008 ll\n"
		"r2 += r3\n"                        /* ALU64 on an arena pointer: 32-bit */
		"r4 = 0x4242\n"
		"*(u64 *)(r2 + 0) = r4\n"
		"%[ptr] = r2\n"
		"r5 = addr_space_cast(r2, 1, 0)\n"  /* back to user form */
		"%[user] = r5\n"
		"r2 -= 8\n"
		"%[val] = *(u64 *)(r2 + 0)\n"
		: [val] "=r"(r_val), [ptr] "=r"(r_ptr), [user] "=r"(r_user)
		: [g] "i"(&g0)
		: "r1", "r2", "r3", "r4", "r5", "memory");
	aout[0] = r_val;
	aout[1] = r_ptr;
	aout[2] = r_user;
	aout[3] = *(&g0 + 1);
	return 0;
}
