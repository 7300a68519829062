/* Acceptance audit: arena globals, kfuncs from BPF, faults, casts, lists, wrap, atomics. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 64, 0);

struct point {
	int x;
	short y;
	unsigned char tag;
	__u64 z;
};

struct node {
	struct node __arena *next;
	__u64 value;
	__u32 key;
};

/* arena globals with initializers */
int __arena_global g_int = 1234;
__s32 __arena_global g_neg = -77;
__s64 __arena_global g_neg64 = -5000000000LL;
char __arena_global g_name[12] = "audit";
__u32 __arena_global g_arr[4] = {1, 2, 3, 4};
struct point __arena_global g_pt = {.x = -3, .y = 7, .tag = 9, .z = 0x1122334455667788ULL};
struct node __arena *__arena_global g_head;
__u64 __arena_global g_zero;
__u64 __arena_global at64 = 10;
__u32 __arena_global at32 = 10;
__u64 __arena_global at_or = 0x110;
__u64 __arena_global at_and = 0x110;
__u64 __arena_global at_xor = 0x110;
__u64 __arena_global at_xchg = 5;
__u64 __arena_global at_cmp = 1;
__u64 __arena_global at_fetch = 100;
__u32 __arena_global at32_or = 0x110;
__u32 __arena_global at32_cmp = 7;

/* .bss / .data */
__u64 bss_ptr;		/* user-form arena pointer stored by BPF */
__u64 bss_ptr2;
__s64 bss_signed = -1;
__u64 res[16];
int nodes_made;

SEC("syscall")
int read_init(void *ctx)
{
	/* 1234 + (-77) + 3 + (-3) + 7 + 9 + 'a' */
	return g_int + g_neg + g_arr[2] + g_pt.x + g_pt.y + g_pt.tag + g_name[0];
}

SEC("syscall")
int alloc_free(void *ctx)
{
	__u64 __arena *p;
	__u64 v;

	p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!p)
		return -1;
	p[0] = 0xabcdef;
	p[511] = 77;
	bss_ptr = (__u64)p;
	v = p[0];
	bpf_arena_free_pages(&arena, p, 1);
	res[0] = v;
	res[1] = p[0];		/* load after free: 0 */
	res[2] = p[511];
	*(volatile __u64 __arena *)&p[1] = 55;	/* store to a freed page: skipped */
	res[3] = *(volatile __u64 __arena *)&p[1];
	return 0;
}

SEC("syscall")
int alloc_hint(void *ctx)
{
	__u64 __arena *p, *q, *hint;
	__u64 base = bss_ptr2;	/* set from Python: user-form address of a page */

	hint = (__u64 __arena *)base;
	p = bpf_arena_alloc_pages(&arena, hint, 2, NUMA_NO_NODE, 0);
	res[4] = (__u64)p;
	q = bpf_arena_alloc_pages(&arena, hint, 1, NUMA_NO_NODE, 0);	/* already taken */
	res[5] = (__u64)q;
	if (p) {
		p[0] = 11;
		p[512] = 22;
	}
	/* a non-page-aligned hint fails */
	q = bpf_arena_alloc_pages(&arena, (void __arena *)(base + 8 * 4096 + 16), 1, NUMA_NO_NODE, 0);
	res[6] = (__u64)q;
	/* too many pages */
	q = bpf_arena_alloc_pages(&arena, NULL, 65, NUMA_NO_NODE, 0);
	res[7] = (__u64)q;
	/* zero pages */
	q = bpf_arena_alloc_pages(&arena, NULL, 0, NUMA_NO_NODE, 0);
	res[8] = (__u64)q;
	return 0;
}

SEC("syscall")
int reserve(void *ctx)
{
	__u64 base = bss_ptr2;
	void __arena *r = (void __arena *)(base + 20 * 4096);
	__u64 __arena *p;
	int rc;

	rc = bpf_arena_reserve_pages(&arena, r, 2);
	res[9] = (__u64)(__s64)rc;
	rc = bpf_arena_reserve_pages(&arena, r, 1);	/* again: -EBUSY */
	res[10] = (__u64)(__s64)rc;
	p = bpf_arena_alloc_pages(&arena, r, 1, NUMA_NO_NODE, 0);	/* reserved: NULL */
	res[11] = (__u64)p;
	p = (__u64 __arena *)r;
	*(volatile __u64 __arena *)p = 99;	/* reserved page: store skipped */
	res[12] = *(volatile __u64 __arena *)p;	/* load gives 0 */
	rc = bpf_arena_reserve_pages(&arena, (void __arena *)(base + 63 * 4096), 5);	/* past end */
	res[13] = (__u64)(__s64)rc;
	bpf_arena_free_pages(&arena, r, 2);	/* releases the reservation */
	p = bpf_arena_alloc_pages(&arena, r, 1, NUMA_NO_NODE, 0);
	res[14] = (__u64)p;
	return 0;
}

SEC("syscall")
int unalloc_store(void *ctx)
{
	__u64 base = bss_ptr2;
	__u64 __arena *p = (__u64 __arena *)(base + 40 * 4096);
	volatile __u64 __arena *vp = p;

	bpfarena_use_map(arena);
	vp[3] = 1234;		/* skipped */
	res[15] = vp[3];
	return (int)vp[3];
}

SEC("syscall")
int build_list(void *ctx)
{
	int i, n = 5;
	struct node __arena *page, *nd;

	page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page)
		return -1;
	for (i = 0; i < n && i < 100; i++) {
		nd = &page[i];
		nd->value = (i + 1) * 100;
		nd->key = i;
		nd->next = g_head;
		g_head = nd;
		nodes_made++;
	}
	return nodes_made;
}

SEC("syscall")
int walk_list(void *ctx)
{
	struct node __arena *nd = g_head;
	__u64 sum = 0;
	int i;

	for (i = 0; i < 1000 && nd; i++) {
		sum += nd->value * (nd->key + 1);
		nd = nd->next;
	}
	return (int)sum;
}

SEC("syscall")
int casts(void *ctx)
{
	__u64 __arena *p;
	__u64 k;

	p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!p)
		return -1;
	p[0] = 5;
	/* arena pointer -> integer -> arena pointer */
	k = (__u64)p;
	p = (__u64 __arena *)(k + 8);
	*p = 6;
	/* NULL arena pointer casts stay NULL */
	res[0] = (__u64)(__u64 __arena *)0;
	res[1] = k;
	res[2] = (__u64)&g_int;	/* address of an arena global, user form */
	return 0;
}

SEC("syscall")
int wrap32(void *ctx)
{
	/* pointer arithmetic on arena pointers wraps at 4 GiB: base - 4096 + 4 GiB == base - 4096 */
	__u64 __arena *p = (__u64 __arena *)&g_zero;
	char __arena *c = (char __arena *)p;
	char __arena *w;

	w = c + 0x100000000ULL;	/* same low 32 bits */
	*(__u64 __arena *)w = 0x5a5a;
	res[0] = g_zero;
	res[1] = (__u64)w;
	return 0;
}

SEC("syscall")
int atomics(void *ctx)
{
	__sync_fetch_and_add(&at64, 5);			/* 15 */
	__sync_fetch_and_add(&at32, 3);			/* 13 */
	__sync_fetch_and_or(&at_or, 0x011);		/* 0x111 */
	__sync_fetch_and_and(&at_and, 0x011);		/* 0x010 */
	__sync_fetch_and_xor(&at_xor, 0x011);		/* 0x101 */
	__sync_fetch_and_or(&at32_or, 0x011);		/* 0x111 */
	res[0] = __sync_lock_test_and_set(&at_xchg, 9);		/* 5, now 9 */
	res[1] = __sync_val_compare_and_swap(&at_cmp, 0, 3);	/* fails: 1 */
	res[2] = __sync_val_compare_and_swap(&at_cmp, 1, 2);	/* ok: 1, now 2 */
	res[3] = __sync_fetch_and_add(&at_fetch, 23);		/* 100, now 123 */
	res[4] = __sync_val_compare_and_swap(&at32_cmp, 7, 8);	/* 7, now 8 */
	return 0;
}

SEC("syscall")
int atomics_fault(void *ctx)
{
	__u64 base = bss_ptr2;
	__u64 __arena *p = (__u64 __arena *)(base + 50 * 4096);	/* never allocated */
	__u64 old = 42;

	bpfarena_use_map(arena);
	__sync_fetch_and_add(p, 1);
	old = __sync_fetch_and_add(p, 7);
	res[0] = old;
	res[1] = __sync_val_compare_and_swap(p, 0, 3);
	res[2] = *p;
	return 0;
}

SEC("syscall")
int ucast(void *ctx)
{
	__u64 __arena *p = &g_zero;
	__u64 __arena *q;
	void *k = (void *)p;		/* cast_kern: low 32 bits */

	asm volatile("" : "+r"(k));
	res[0] = (__u64)k;
	q = (__u64 __arena *)k;		/* cast_user: upper half of user_vm_start joins */
	res[1] = (__u64)q;
	k = NULL;
	asm volatile("" : "+r"(k));
	q = (__u64 __arena *)k;		/* NULL stays NULL */
	res[2] = (__u64)q;
	return 0;
}

SEC("syscall")
int free_at(void *ctx)
{
	/* free the page at bss_ptr2 (set from Python), then try to allocate exactly there */
	void __arena *p = (void __arena *)bss_ptr2;

	bpf_arena_free_pages(&arena, p, 1);
	res[0] = *(volatile __u64 __arena *)p;
	return 0;
}

SEC("syscall")
int alloc_at(void *ctx)
{
	res[1] = (__u64)bpf_arena_alloc_pages(&arena, (void __arena *)bss_ptr2, 1, NUMA_NO_NODE, 0);
	return 0;
}
