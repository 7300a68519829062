// SPDX-License-Identifier: MIT
/* Long walks without a fixed cap: can_loop (may_goto) loops in arena_list.h / arena_htab.h.
 *   htab_build: builds a table of n_buckets buckets at `table` with keys [0, nr_keys), value
 *               key * 3 + 1 (arena_htab_update, one bpf_loop step per key); returns 0 or the error
 *   htab_update: sets key -> key * 3 + 1 for keys [0, nr_keys) in the table at `table`
 *   htab_check: looks keys [0, nr_keys) up in the table at `table` (built by BPF or Python);
 *               found / checksum (sum of the values found)
 *   list_walk:  walks the list at `head` in ONE for loop (arena_list_for_each_entry): count, sum
 *   list_walk_bounded: the same with arena_list_for_each_entry_bounded(.., max_steps)
 *   cond_count: counts to `target` in a for (;;) { cond_break; ... } loop
 * All return 0 unless stated. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 8192, 0);

#include "arena_htab.h"

struct elem {
	struct arena_list_node node;
	__u64 value;
};

struct arena_htab __arena *table;
struct arena_list_head __arena *head;
int n_buckets, nr_keys;
int error;
__u64 found, checksum, count, sum, max_steps, target;

struct c {
	arena_htab_t *h;
};

static long insert_cb(__u64 i, void *data)
{
	int err = arena_htab_update(((struct c *)data)->h, i, i * 3 + 1);

	if (err) {
		error = err;
		return 1;
	}
	return 0;
}

SEC("syscall")
int htab_build(void *ctx)
{
	struct c c;
	int err;

	c.h = bpf_alloc(sizeof(*c.h));
	if (!c.h)
		return -12;
	err = arena_htab_init(c.h, n_buckets);
	if (err)
		return err;
	table = c.h;
	error = 0;
	bpf_loop(nr_keys, insert_cb, &c, 0);
	return error;
}

SEC("syscall")
int htab_update(void *ctx)
{
	struct c c = { .h = table };

	error = 0;
	bpf_loop(nr_keys, insert_cb, &c, 0);
	return error;
}

static long lookup_cb(__u64 i, void *data)
{
	arena_htab_elem_t *e = arena_htab_find(((struct c *)data)->h, i);

	if (e) {
		found++;
		checksum += e->value;
	}
	return 0;
}

SEC("syscall")
int htab_check(void *ctx)
{
	struct c c = { .h = table };

	found = checksum = 0;
	bpf_loop(nr_keys, lookup_cb, &c, 0);
	return 0;
}

SEC("syscall")
int list_walk(void *ctx)
{
	struct elem __arena *e;
	__u64 n = 0, s = 0;

	bpfarena_use_map(arena);
	arena_list_for_each_entry(e, head, node) {
		n++;
		s += e->value;
	}
	count = n;
	sum = s;
	return e ? 1 : 0; /* 1: the walk stopped before the end */
}

SEC("syscall")
int list_walk_bounded(void *ctx)
{
	struct elem __arena *e;
	__u64 n = 0, s = 0;

	bpfarena_use_map(arena);
	arena_list_for_each_entry_bounded(e, head, node, max_steps) {
		n++;
		s += e->value;
	}
	count = n;
	sum = s;
	return e ? 1 : 0;
}

SEC("syscall")
int cond_count(void *ctx)
{
	__u64 n = 0, t = target;

	for (;;) {
		cond_break;
		if (n >= t)
			break;
		n++;
	}
	count = n;
	return 0;
}

char _license[] SEC("license") = "GPL";
