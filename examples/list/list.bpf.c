// SPDX-License-Identifier: MIT
/* A plain linked list in the arena, both ways round.
 *
 *   build:   BPF pushes nr_elems elements (value VALUE(i)) onto the arena global bpf_list with
 *            arena_list_add_head; Python walks it through the stored pointers.
 *   sum_py:  Python builds a list with its own writes and stores its head's address in py_list;
 *            BPF walks it (one node per bpf_loop step) and reports count and checksum. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 1 << 14, 0);

#include "arena_alloc.h"
#include "arena_list.h"

#define VALUE(i) ((__u64)(i) * 0x9E3779B97F4A7C15ULL)

struct list_elem {
	struct arena_list_node node;
	__u64 value;
};

struct arena_list_head __arena_global bpf_list;
struct list_elem __arena *first_elem; /* typed, so BTF describes the element */

int nr_elems = 1000;
struct arena_list_head __arena *py_list;
int error;
__u64 count;
__u64 checksum; /* sum of values, mod 2^64 */
__u64 order_errors; /* pprev links that do not point back */

static long push_cb(__u64 i, void *data)
{
	struct list_elem __arena *e = bpf_alloc(sizeof(*e));

	if (!e) {
		error = -12;
		return 1;
	}
	e->value = VALUE(i);
	arena_list_add_head(&e->node, &bpf_list);
	return 0;
}

SEC("syscall")
int build(void *ctx)
{
	bpf_loop(nr_elems, push_cb, NULL, 0);
	first_elem = arena_list_entry_safe(bpf_list.first, struct list_elem, node);
	return error ? 1 : 0;
}

struct walk {
	arena_list_node_t *n;
	arena_list_node_t * __arena *expect_pprev;
};

static long step_cb(__u64 i, void *data)
{
	struct walk *w = data;
	arena_list_node_t *n = w->n;

	if (!n)
		return 1;
	if (n->pprev != w->expect_pprev)
		order_errors++;
	count++;
	checksum += arena_list_entry(n, struct list_elem, node)->value;
	w->expect_pprev = &n->next;
	w->n = n->next;
	return 0;
}

SEC("syscall")
int sum_py(void *ctx)
{
	struct walk w;

	bpfarena_use_map(arena); /* nothing else here names the arena: tell the verifier */
	if (!py_list)
		return 1;
	w.n = py_list->first;
	w.expect_pprev = &py_list->first;
	count = checksum = order_errors = 0;
	bpf_loop(1 << 23, step_cb, &w, 0);
	return w.n ? 2 : 0; /* 2: longer than bpf_loop's limit */
}

char _license[] SEC("license") = "GPL";
