/* Audit 2: verifier_arena-like contracts on a 2-page arena that ends at a 4 GiB boundary. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

#define EDGE_BASE ((1ULL << 44) | (0xffffffffULL - 2 * PAGE_SIZE + 1))
BPFARENA_MAP(arena, 2, EDGE_BASE);

__u64 out[8];
int step;

SEC("syscall")
int alloc1(void *ctx)
{
	volatile int __arena *page1, *page2, *no_page, *page3;

	page1 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page1)
		return 1;
	*page1 = 1;
	page2 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page2)
		return 2;
	*page2 = 2;
	no_page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (no_page)
		return 3;
	if (*page1 != 1)
		return 4;
	if (*page2 != 2)
		return 5;
	out[0] = (__u64)page1;
	out[1] = (__u64)page2;
	bpf_arena_free_pages(&arena, (void __arena *)page2, 1);
	if (*page1 != 1)
		return 6;
	if (*page2 != 0)
		return 7;
	page3 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page3)
		return 8;
	*page3 = 3;
	if (page2 != page3)
		return 9;
	if (*page1 != 1)
		return 10;
	out[2] = (__u64)page3;
	return 0;
}

SEC("syscall")
int free_all(void *ctx)
{
	char __arena *p = (char __arena *)EDGE_BASE;

	bpf_arena_free_pages(&arena, p, 2);
	return *(volatile char __arena *)p + *(volatile char __arena *)(p + PAGE_SIZE);
}

SEC("syscall")
int alloc2(void *ctx)
{
	volatile char __arena *page;

	page = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	if (!page)
		return 1;
	out[3] = (__u64)page;
	if (*(page + 2 * PAGE_SIZE) != 0) /* wraps to BPF address 0: nothing there */
		return 2;
	if (*(page - 1) != 0)
		return 3;
	*page = 1;
	*(page + PAGE_SIZE) = 2;
	*(page + 2 * PAGE_SIZE - 1) = 3;
	*(page + 2 * PAGE_SIZE) = 4; /* skipped */
	*(page - 1) = 5;             /* skipped */
	if (*(page + 2 * PAGE_SIZE) != 0)
		return 4;
	if (*(page - 1) != 0)
		return 5;
	out[4] = *page + *(page + PAGE_SIZE) + *(page + 2 * PAGE_SIZE - 1);
	if (out[4] != 6)
		return 6;
	bpf_arena_free_pages(&arena, (void __arena *)page, 2);
	if (*page != 0 || *(page + PAGE_SIZE) != 0 || *(page + 2 * PAGE_SIZE - 1) != 0)
		return 7;
	/* keep something for Python to see */
	page = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	if (!page)
		return 8;
	*(page + PAGE_SIZE + 7) = 0x5a;
	return 0;
}

SEC("syscall")
int reserve1(void *ctx)
{
	char __arena *base = (char __arena *)EDGE_BASE;
	void __arena *p;
	int ret;

	ret = bpf_arena_reserve_pages(&arena, base, 1);
	if (ret)
		return 1;
	p = bpf_arena_alloc_pages(&arena, base, 1, NUMA_NO_NODE, 0);
	if (p)
		return 2;
	/* the other page is still allocatable; a best-fit request finds it */
	p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (p != base + PAGE_SIZE)
		return 3;
	/* now no page is left: reserved does not count as free */
	if (bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0))
		return 4;
	/* a store to the reserved page is skipped, a load reads 0 */
	*(volatile int __arena *)base = 9;
	if (*(volatile int __arena *)base != 0)
		return 5;
	/* freeing a reserved page makes it allocatable again */
	bpf_arena_free_pages(&arena, base, 1);
	p = bpf_arena_alloc_pages(&arena, base, 1, NUMA_NO_NODE, 0);
	if (p != base)
		return 6;
	return 0;
}

SEC("syscall")
int reserve_twice(void *ctx)
{
	char __arena *base = (char __arena *)EDGE_BASE;
	int ret;

	ret = bpf_arena_reserve_pages(&arena, base, 1);
	if (ret)
		return 1;
	ret = bpf_arena_reserve_pages(&arena, base, 1);
	out[5] = (__u64)(__s64)ret;
	if (ret != -16) /* -EBUSY */
		return 2;
	/* reserving an allocated page is -EBUSY too */
	if (!bpf_arena_alloc_pages(&arena, base + PAGE_SIZE, 1, NUMA_NO_NODE, 0))
		return 3;
	ret = bpf_arena_reserve_pages(&arena, base + PAGE_SIZE, 1);
	out[6] = (__u64)(__s64)ret;
	if (ret != -16)
		return 4;
	return 0;
}

SEC("syscall")
int reserve_invalid(void *ctx)
{
	char __arena *base = (char __arena *)EDGE_BASE;
	int r[5];

	r[0] = bpf_arena_reserve_pages(&arena, NULL, 3);
	r[1] = bpf_arena_reserve_pages(&arena, base, 3);
	r[2] = bpf_arena_reserve_pages(&arena, base, 4096);
	r[3] = bpf_arena_reserve_pages(&arena, base, 0xffffffff);
	r[4] = bpf_arena_reserve_pages(&arena, base + 1, 1);
	out[0] = (__u32)r[0];
	out[1] = (__u32)r[1];
	out[2] = (__u32)r[2];
	out[3] = (__u32)r[3];
	out[4] = (__u32)r[4];
	for (int i = 0; i < 4; i++)
		if (r[i] != -22)
			return i + 1;
	return 0;
}
