// SPDX-License-Identifier: MIT
/* A plain linked list in the arena, both ways round.
 *
 *   build:   BPF pushes nr_elems elements (value VALUE(i)) onto the arena global bpf_list with
 *            arena_list_add_head; Python walks it through the stored pointers.
 *   sum_py:  Python builds a list with its own writes and stores its head's address in py_list;
 *            BPF walks it in one loop (arena_list_for_each_entry, a may_goto loop) and reports
 *            count, checksum and bad back links. */
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

/* one plain loop over the whole list: arena_list_for_each_entry is a can_loop (may_goto) loop,
 * so the verifier checks its body once, whatever the list's length */
SEC("syscall")
int sum_py(void *ctx)
{
	arena_list_node_t * __arena *expect_pprev;
	struct list_elem __arena *e;
	__u64 n = 0, sum = 0, bad = 0;

	bpfarena_use_map(arena); /* nothing else here names the arena: tell the verifier */
	if (!py_list)
		return 1;
	expect_pprev = &py_list->first;
	arena_list_for_each_entry(e, py_list, node) {
		if (e->node.pprev != expect_pprev)
			bad++;
		n++;
		sum += e->value;
		expect_pprev = &e->node.next;
	}
	count = n;
	checksum = sum;
	order_errors = bad;
	return e ? 2 : 0; /* 2: the may_goto budget ran out before the end */
}

char _license[] SEC("license") = "GPL";
