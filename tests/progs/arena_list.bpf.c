// SPDX-License-Identifier: MIT
/* arena_list: a list whose head and elements live in a 100-page arena at a fixed address.
 * Contract: arena globals arena_sum, test_val (= 1 initially) and global_head. arena_list_add
 * pushes cnt elements (cnt from .bss) with value i, each step doing test_val++ and
 * arena_sum += i, then sums the list into list_sum; list_del unlinks and frees every element,
 * summing their values into list_sum and arena_sum. Both return 0. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 100, 1ULL << 32);

#include "arena_alloc.h"
#include "arena_list.h"

struct elem {
	struct arena_list_node node;
	__u64 value;
};

__u64 __arena_global arena_sum;
int __arena_global test_val = 1;
struct arena_list_head __arena_global global_head;

int cnt;
__u64 list_sum;
int add_error;

static long add_one(__u64 i, void *data)
{
	struct elem __arena *e = bpf_alloc(sizeof(*e));

	if (!e) {
		add_error = -12;
		return 1;
	}
	e->value = i;
	arena_list_add_head(&e->node, &global_head);
	test_val++;
	arena_sum += i;
	return 0;
}

struct walk {
	arena_list_node_t *n;
	__u64 sum;
	int del;
};

static long walk_one(__u64 i, void *data)
{
	struct walk *w = data;
	arena_list_node_t *n = w->n;
	struct elem __arena *e;

	if (!n)
		return 1;
	e = arena_list_entry(n, struct elem, node);
	w->n = n->next;
	w->sum += e->value;
	if (w->del) {
		arena_list_del(n);
		bpf_free(e);
	}
	return 0;
}

static __u64 walk_list(int del)
{
	struct walk w = { .n = global_head.first, .del = del };

	bpf_loop(1 << 23, walk_one, &w, 0);
	return w.sum;
}

SEC("syscall")
int list_add(void *ctx)
{
	int n = cnt;

	if (n < 0 || n > 100000)
		return 1;
	bpf_loop(n, add_one, NULL, 0);
	if (add_error)
		return 2;
	list_sum = walk_list(0);
	return 0;
}

SEC("syscall")
int list_del(void *ctx)
{
	__u64 sum = walk_list(1);

	list_sum = sum;
	arena_sum = sum;
	return 0;
}

char _license[] SEC("license") = "GPL";
