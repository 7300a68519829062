/* SPDX-License-Identifier: MIT */
/*
 * arena_htab.h: a hash table of lists (arena_list.h) that lives in the arena, allocated with
 * arena_alloc.h. Python's bpfarena.ds.ArenaHashTable builds and walks the same layout.
 *
 * Layout (little endian; every pointer is a user-form arena address, 0 = NULL):
 *   struct arena_htab {            16 bytes
 *       u64 buckets;               -> array of n_buckets list heads (u64 first each)
 *       s32 n_buckets;             a power of two
 *       u32 pad;
 *   };
 *   struct arena_htab_elem {       32 bytes
 *       s32 hash;                  == key
 *       s32 key;
 *       s32 value;
 *       u32 pad;
 *       struct arena_list_node node;  at offset 16: { u64 next; u64 pprev; }
 *   };
 * hash(key) = key; the bucket is hash & (n_buckets - 1). A bucket's `first` and a node's `next`
 * point at the *node* of the next element (element address + 16).
 *
 * API (sleepable programs, since it allocates):
 *   int arena_htab_init(struct arena_htab __arena *h, __u32 n_buckets);   0 or -ENOMEM
 *       n_buckets = 0 means 1024 (two pages of buckets); others round up to a power of two.
 *   int arena_htab_update(struct arena_htab __arena *h, int key, int value);
 *       inserts a new element at the bucket's head, then unlinks and frees an older one.
 *       0, -ENOMEM, or -E2BIG when the may_goto budget ran out before the walk could tell
 *       whether the key is present (nothing is changed then).
 *   int arena_htab_lookup(struct arena_htab __arena *h, int key);   the value, 0 when absent
 *   struct arena_htab_elem __arena *arena_htab_find(h, key);        NULL when absent
 *   int arena_htab_delete(struct arena_htab __arena *h, int key);   0, -ENOENT or -E2BIG
 * Every function names the arena map (BPFARENA_ALLOC_MAP), so a program that only looks up
 * still counts as using the arena, which the verifier requires for addr_space_cast.
 * Bucket walks have no fixed cap: they are can_loop (may_goto) loops, which the verifier checks
 * once, so chains of any length are walked to the end. Only the frame's may_goto budget (8M
 * steps, or a time budget on x86-64 since Linux 6.15) can end a walk early; find/lookup then
 * report the key absent. Short chains are still faster: n_buckets >= elements is a good rule.
 * The bucket and element layouts do not depend on any of this.
 */
#ifndef BPFARENA_ARENA_HTAB_H
#define BPFARENA_ARENA_HTAB_H

#include "bpfarena.h"
#include "arena_alloc.h"
#include "arena_list.h"

#define ARENA_HTAB_DEFAULT_BUCKETS (2 * PAGE_SIZE / 8)
#define ARENA_HTAB_MAX_BUCKETS (1U << 24)

struct arena_htab {
	arena_list_head_t *buckets;
	int n_buckets;
	__u32 pad;
};
typedef struct arena_htab __arena arena_htab_t;

struct arena_htab_elem {
	int hash;
	int key;
	int value;
	__u32 pad;
	struct arena_list_node node;
};
typedef struct arena_htab_elem __arena arena_htab_elem_t;

#if defined(__bpf__) /* user-space C gets the layout only */

static inline arena_list_head_t *arena_htab_bucket(arena_htab_t *h, int hash)
{
	return &h->buckets[hash & (h->n_buckets - 1)];
}

static inline int arena_htab_init(arena_htab_t *h, __u32 n_buckets)
{
	void __arena *b;
	__u32 n = 1, pages;

	if (!n_buckets)
		n_buckets = ARENA_HTAB_DEFAULT_BUCKETS;
	if (n_buckets > ARENA_HTAB_MAX_BUCKETS)
		return -22; /* -EINVAL */
	for (int i = 0; i < 25 && n < n_buckets; i++)
		n <<= 1;
	pages = (n * 8 + PAGE_SIZE - 1) / PAGE_SIZE;
	b = bpf_arena_alloc_pages(&BPFARENA_ALLOC_MAP, NULL, pages, NUMA_NO_NODE, 0);
	if (!b)
		return -12; /* -ENOMEM */
	h->buckets = b;
	h->n_buckets = n;
	return 0;
}

/* the element with this key in bucket `head`, or NULL; *cut is set when the walk stopped early
 * (the may_goto budget was spent), so that NULL does not prove the key absent */
static inline arena_htab_elem_t *__arena_htab_walk(arena_list_head_t *head, int key, bool *cut)
{
	arena_htab_elem_t *e;

	arena_list_for_each_entry(e, head, node) {
		if (e->hash == key && e->key == key)
			return e;
	}
	*cut = e != NULL; /* the loop ends with e == NULL only at the end of the chain */
	return NULL;
}

static inline arena_htab_elem_t *arena_htab_find(arena_htab_t *h, int key)
{
	bool cut = false;

	/* a lookup-only program names no map otherwise, and the verifier wants the arena named */
	bpfarena_use_map(BPFARENA_ALLOC_MAP);
	return __arena_htab_walk(arena_htab_bucket(h, key), key, &cut);
}

static inline int arena_htab_lookup(arena_htab_t *h, int key)
{
	arena_htab_elem_t *e = arena_htab_find(h, key);

	return e ? e->value : 0;
}

static inline int arena_htab_update(arena_htab_t *h, int key, int value)
{
	arena_list_head_t *head = arena_htab_bucket(h, key);
	arena_htab_elem_t *e, *old;
	bool cut = false;

	/* look for an older element with this key first (the new one will shadow it) */
	old = __arena_htab_walk(head, key, &cut);
	if (cut)
		return -7; /* -E2BIG: a duplicate could hide behind the unwalked rest */
	e = bpf_alloc(sizeof(*e));
	if (!e)
		return -12; /* -ENOMEM */
	e->hash = key;
	e->key = key;
	e->value = value;
	arena_list_add_head(&e->node, head);
	if (old) {
		arena_list_del(&old->node);
		bpf_free(old);
	}
	return 0;
}

static inline int arena_htab_delete(arena_htab_t *h, int key)
{
	arena_htab_elem_t *e;
	bool cut = false;

	bpfarena_use_map(BPFARENA_ALLOC_MAP);
	e = __arena_htab_walk(arena_htab_bucket(h, key), key, &cut);
	if (!e)
		return cut ? -7 : -2; /* -E2BIG, -ENOENT */
	arena_list_del(&e->node);
	bpf_free(e);
	return 0;
}

#endif /* __bpf__ */
#endif /* BPFARENA_ARENA_HTAB_H */
