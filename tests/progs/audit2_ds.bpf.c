/* Audit 2: sched_ext-style allocators (bump, fixed-size chunks with a free list) and a binary
 * search tree in the arena, built by BPF and walked by Python, or built by Python, summed by BPF. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 1024, 0);

/* ---- bump allocator: a region of pages taken on init, carved upward ---- */
struct bump {
	char __arena *base;
	__u64 off;
	__u64 limit;
};

struct bump __arena_global bump_state;

#define BUMP_PAGES 16

SEC("syscall")
int bump_init(void *ctx)
{
	char __arena *p = bpf_arena_alloc_pages(&arena, NULL, BUMP_PAGES, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	bump_state.base = p;
	bump_state.off = 0;
	bump_state.limit = BUMP_PAGES * PAGE_SIZE;
	return 0;
}

static void __arena *bump_alloc(__u64 size)
{
	__u64 off = (bump_state.off + 7) & ~7ULL;

	if (off + size > bump_state.limit)
		return NULL;
	bump_state.off = off + size;
	return bump_state.base + off;
}

/* ---- chunk allocator: fixed 48-byte chunks, free list threaded through them ---- */
#define CHUNK 48
struct chunk {
	struct chunk __arena *next;
};

struct chunk __arena *__arena_global free_list;
__u64 __arena_global chunks_live;

static __noinline int chunk_refill(void)
{
	char __arena *pg = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	int i;

	if (!pg)
		return -1;
	/* the page's chunks in address order on the list */
	for (i = PAGE_SIZE / CHUNK - 1; i >= 0; i--) {
		struct chunk __arena *c = (struct chunk __arena *)(pg + i * CHUNK);

		c->next = free_list;
		free_list = c;
	}
	return 0;
}

static __noinline void __arena *chunk_alloc(void)
{
	struct chunk __arena *c = free_list;

	if (!c) {
		if (chunk_refill())
			return NULL;
		c = free_list;
		if (!c)
			return NULL;
	}
	free_list = c->next;
	c->next = NULL;
	chunks_live++;
	return c;
}

static void chunk_free(void __arena *p)
{
	struct chunk __arena *c = p;

	c->next = free_list;
	free_list = c;
	chunks_live--;
}

/* ---- tree ---- */
struct node {
	struct node __arena *left;
	struct node __arena *right;
	__u64 key;
	__u64 value;
	__u32 depth;
	__u32 pad;
};

struct node __arena *__arena_global root;
struct node __arena *py_root; /* .bss: set by Python */

__u32 nkeys = 1000;
__u32 seed = 12345;
__u64 inserted, dups, max_depth, sum_keys, sum_values, py_sum, py_count, py_max_depth;
__u64 bump_a, bump_b, bump_c;
__u64 chunk_a, chunk_b, chunk_c;

SEC("syscall")
int bump_test(void *ctx)
{
	__u32 __arena *a = bump_alloc(5);
	__u64 __arena *b = bump_alloc(16);
	__u64 __arena *c;

	if (!a || !b)
		return 1;
	*a = 0xaaaa;
	b[0] = 0xbbbb;
	b[1] = 0xcccc;
	c = bump_alloc(BUMP_PAGES * PAGE_SIZE); /* too big: NULL, offset unchanged */
	bump_a = (__u64)a;
	bump_b = (__u64)b;
	bump_c = (__u64)c;
	return c ? 2 : 0;
}

SEC("syscall")
int chunk_test(void *ctx)
{
	void __arena *a = chunk_alloc();
	void __arena *b = chunk_alloc();
	void __arena *c;

	if (!a || !b)
		return 1;
	chunk_free(a);
	c = chunk_alloc(); /* LIFO: a again */
	chunk_a = (__u64)a;
	chunk_b = (__u64)b;
	chunk_c = (__u64)c;
	return c == a ? 0 : 2;
}

SEC("syscall")
int tree_build(void *ctx)
{
	__u32 x = seed;
	__u32 i;

	for (i = 0; i < nkeys && can_loop; i++) {
		struct node __arena *n, *cur, *parent = NULL;
		__u64 key;
		__u32 d = 0;
		int went_left = 0;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		key = x % 5000;
		cur = root;
		while (cur && can_loop) {
			if (key == cur->key)
				break;
			parent = cur;
			went_left = key < cur->key;
			cur = went_left ? cur->left : cur->right;
			d++;
		}
		if (cur) {
			cur->value += 1;
			dups++;
			continue;
		}
		n = chunk_alloc();
		if (!n)
			return -1;
		/* volatile: clang 19 would merge the zero stores into a memset on the uncast
		 * pointer (the guide's pitfall) */
		((volatile struct node __arena *)n)->left = NULL;
		((volatile struct node __arena *)n)->right = NULL;
		n->key = key;
		n->value = 1;
		n->depth = d;
		if (!parent)
			root = n;
		else if (went_left)
			parent->left = n;
		else
			parent->right = n;
		if (d > max_depth)
			max_depth = d;
		inserted++;
		sum_keys += key;
	}
	return 0;
}

/* sum a tree Python built, iteratively with an explicit stack kept in the arena */
#define STACK 64
struct node __arena *__arena_global tstack[STACK];
__u32 __arena_global tdepth[STACK];

SEC("syscall")
int tree_sum(void *ctx)
{
	__u32 sp;

	bpfarena_use_map(arena);
	py_sum = 0;
	py_count = 0;
	py_max_depth = 0;
	if (!py_root)
		return 0;
	tstack[0] = py_root;
	tdepth[0] = 0;
	sp = 1;
	while (sp > 0 && can_loop) {
		struct node __arena *n;
		__u32 d;

		sp--;
		n = tstack[sp & (STACK - 1)];
		d = tdepth[sp & (STACK - 1)];
		py_sum += n->key * n->value;
		py_count++;
		if (d > py_max_depth)
			py_max_depth = d;
		if (sp + 2 > STACK)
			return -3;
		if (n->left) {
			tstack[sp & (STACK - 1)] = n->left;
			tdepth[sp & (STACK - 1)] = d + 1;
			sp++;
		}
		if (n->right) {
			tstack[sp & (STACK - 1)] = n->right;
			tdepth[sp & (STACK - 1)] = d + 1;
			sp++;
		}
	}
	return py_count;
}

/* a struct the whole file uses by value, so BTF has it complete */
struct node __arena *__arena_global last_node;
