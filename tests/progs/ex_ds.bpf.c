// SPDX-License-Identifier: MIT
/* BPF working on structures Python built with bpfarena.ds (layout and allocator compatibility).
 *   htab_sum:    looks up keys [0, nr_keys) in the table at `table`; found / checksum
 *   htab_delete: deletes keys [lo, hi) from it (bpf_free on objects Python allocated)
 *   htab_update: sets key -> value for keys [lo, hi) (value = key * 2 + 1)
 *   list_pop:    unlinks and frees the first `pops` elements of the list whose head is `head`,
 *                summing their values
 * All return 0 on success. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 4096, 0);

#include "arena_htab.h"

struct list_elem {
	struct arena_list_node node;
	__u64 value;
};

struct arena_htab __arena *table;
struct arena_list_head __arena *head;
int nr_keys, lo, hi, pops;
int error;
__u64 found, checksum, popped, popped_sum;

struct c {
	arena_htab_t *h;
};

static long sum_cb(__u64 i, void *data)
{
	arena_htab_elem_t *e = arena_htab_find(((struct c *)data)->h, i);

	if (e) {
		found++;
		checksum += e->value;
	}
	return 0;
}

SEC("syscall")
int htab_sum(void *ctx)
{
	struct c c = { .h = table };

	found = checksum = 0;
	bpf_loop(nr_keys, sum_cb, &c, 0);
	return 0;
}

static long del_cb(__u64 i, void *data)
{
	int err = arena_htab_delete(((struct c *)data)->h, lo + i);

	if (err && err != -2)
		error = err;
	return 0;
}

SEC("syscall")
int htab_delete(void *ctx)
{
	struct c c = { .h = table };

	bpf_loop(hi - lo, del_cb, &c, 0);
	return error;
}

static long upd_cb(__u64 i, void *data)
{
	int key = lo + i;
	int err = arena_htab_update(((struct c *)data)->h, key, key * 2 + 1);

	if (err) {
		error = err;
		return 1;
	}
	return 0;
}

SEC("syscall")
int htab_update(void *ctx)
{
	struct c c = { .h = table };

	bpf_loop(hi - lo, upd_cb, &c, 0);
	return error;
}

static long pop_cb(__u64 i, void *data)
{
	arena_list_node_t *n = head->first;
	struct list_elem __arena *e;

	if (!n)
		return 1;
	e = arena_list_entry(n, struct list_elem, node);
	popped++;
	popped_sum += e->value;
	arena_list_del(n);
	bpf_free(e);
	return 0;
}

SEC("syscall")
int list_pop(void *ctx)
{
	popped = popped_sum = 0;
	bpf_loop(pops, pop_cb, NULL, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
