/* Audit 2: verifier_arena_large-like contracts on a 4 GiB arena (1 << 20 pages). */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

#define ARENA_SIZE (1ULL << 32)
#define LBASE (1ULL << 44)
BPFARENA_MAP(arena, ARENA_SIZE / PAGE_SIZE, LBASE);

__u64 out[16];
__u64 wrap[2];
__u64 wrap_off = PAGE_SIZE;
int nseq = 64;

/* page 0 holds the arena globals, so the first allocation is page 1 (as in the selftest) */
__u64 __arena_global gdata = 0x600dULL;

SEC("syscall")
int big_alloc1(void *ctx)
{
	volatile char __arena *page1, *page2, *no_page, *page3, *last;
	char __arena *base;

	page1 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page1)
		return 1;
	base = (char __arena *)page1;
	out[0] = (__u64)page1;
	*page1 = 1;
	/* base + 4 GiB - 2 pages: the arena's last page (32-bit wrap) */
	page2 = bpf_arena_alloc_pages(&arena, base + ARENA_SIZE - PAGE_SIZE * 2, 1, NUMA_NO_NODE,
				      0);
	if (!page2)
		return 2;
	out[1] = (__u64)page2;
	*page2 = 2;
	/* base + 4 GiB - 1 page: wraps onto page 0, the globals page: taken */
	no_page = bpf_arena_alloc_pages(&arena, base + ARENA_SIZE - PAGE_SIZE, 1, NUMA_NO_NODE, 0);
	out[2] = (__u64)no_page;
	if (no_page)
		return 3;
	if (*page1 != 1)
		return 4;
	if (*page2 != 2)
		return 5;
	bpf_arena_free_pages(&arena, (void __arena *)page1, 1);
	if (*page2 != 2)
		return 6;
	if (*page1 != 0)
		return 7;
	page3 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page3)
		return 8;
	*page3 = 3;
	if (page1 != page3)
		return 9;
	if (*page2 != 2)
		return 10;
	if (*(page1 + PAGE_SIZE) != 0)
		return 11;
	/* page1 - PAGE_SIZE is page 0: the globals */
	if (*(volatile __u64 __arena *)(page1 - PAGE_SIZE) != 0x600d)
		return 12;
	/* page2 + PAGE_SIZE is page 0 only if the add is done on the 32-bit register; as an
	 * instruction offset it reaches past the 4 GiB window into the guard (reads 0) */
	wrap[0] = *(volatile __u64 __arena *)(page2 + PAGE_SIZE);
	wrap[1] = *(volatile __u64 __arena *)(page2 + wrap_off);
	if (*(page2 - PAGE_SIZE) != 0)
		return 14;
	/* the last page again, now taken: NULL */
	last = bpf_arena_alloc_pages(&arena, (char __arena *)page2, 1, NUMA_NO_NODE, 0);
	if (last)
		return 15;
	out[3] = (__u64)page3;
	return 0;
}

/* sequential best-fit allocations, then free every other one and fill the gaps */
SEC("syscall")
int seq_and_gaps(void *ctx)
{
	char __arena *first = NULL, *p;
	__u64 sum = 0;
	int i;

	for (i = 0; i < nseq && i < 64; i++) {
		p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!p)
			return 100 + i;
		*(volatile __u32 __arena *)p = i + 1;
		if (!first)
			first = p;
		else if (p != first + (__u64)i * PAGE_SIZE)
			return 200 + i;
	}
	out[4] = (__u64)first;
	for (i = 0; i < 64 && i < nseq; i += 2)
		bpf_arena_free_pages(&arena, first + (__u64)i * PAGE_SIZE, 1);
	/* a 2-page request fits none of the 1-page gaps: it goes after the run */
	p = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	out[5] = (__u64)p;
	/* 1-page requests fill the gaps, lowest first */
	p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	out[6] = (__u64)p;
	p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	out[7] = (__u64)p;
	for (i = 0; i < 64 && i < nseq; i++)
		sum += *(volatile __u32 __arena *)(first + (__u64)i * PAGE_SIZE);
	out[8] = sum;
	return 0;
}

/* reserved and partially reserved ranges */
SEC("syscall")
int reserved_ranges(void *ctx)
{
	char __arena *base = (char __arena *)LBASE;
	char __arena *r = base + 0x10000000ULL; /* 256 MiB in */
	char __arena *p;
	int ret;

	ret = bpf_arena_reserve_pages(&arena, r, 8);
	if (ret)
		return 1;
	/* exactly on the reservation, or overlapping one end of it: NULL */
	if (bpf_arena_alloc_pages(&arena, r, 1, NUMA_NO_NODE, 0))
		return 2;
	if (bpf_arena_alloc_pages(&arena, r - PAGE_SIZE, 2, NUMA_NO_NODE, 0))
		return 3;
	if (bpf_arena_alloc_pages(&arena, r + 7 * PAGE_SIZE, 2, NUMA_NO_NODE, 0))
		return 4;
	/* right next to it: fine */
	p = bpf_arena_alloc_pages(&arena, r + 8 * PAGE_SIZE, 1, NUMA_NO_NODE, 0);
	if (p != r + 8 * PAGE_SIZE)
		return 5;
	*(volatile __u64 __arena *)p = 0x1122334455667788ULL;
	/* reserving a range that overlaps an allocated page: -EBUSY, nothing reserved */
	ret = bpf_arena_reserve_pages(&arena, r + 6 * PAGE_SIZE, 4);
	out[9] = (__u64)(__s64)ret;
	/* free part of the reservation, then allocate exactly there */
	bpf_arena_free_pages(&arena, r + 2 * PAGE_SIZE, 2);
	p = bpf_arena_alloc_pages(&arena, r + 2 * PAGE_SIZE, 2, NUMA_NO_NODE, 0);
	out[10] = (__u64)p;
	if (p)
		*(volatile __u64 __arena *)(p + PAGE_SIZE) = 77;
	/* stores into the still-reserved part are skipped */
	*(volatile __u64 __arena *)r = 5;
	out[11] = *(volatile __u64 __arena *)r;
	/* reserve past the end of the arena */
	ret = bpf_arena_reserve_pages(&arena, base + ARENA_SIZE - PAGE_SIZE, 2);
	out[12] = (__u64)(__s64)ret;
	return 0;
}

/* a large allocation and its last page */
SEC("syscall")
int big_run(void *ctx)
{
	char __arena *p = bpf_arena_alloc_pages(&arena, NULL, 2051, NUMA_NO_NODE, 0);

	if (!p)
		return 1;
	out[13] = (__u64)p;
	*(volatile __u8 __arena *)(p + 2051ULL * PAGE_SIZE - 1) = 0xee;
	out[14] = *(volatile __u8 __arena *)(p + 2051ULL * PAGE_SIZE - 1);
	bpf_arena_free_pages(&arena, p + PAGE_SIZE, 2049);
	out[15] = *(volatile __u8 __arena *)(p + 2051ULL * PAGE_SIZE - 1);
	return 0;
}
