// SPDX-License-Identifier: MIT
/* A hash table of linked lists in the arena, both ways round.
 *
 *   build:      BPF builds a table of nr_elems elements (key i, value VALUE(i)) and stores the
 *               table's user address in bpf_table; Python then walks it through the pointers.
 *   lookup_all: Python builds a table with its own writes and stores its address in py_table;
 *               BPF looks up every key in [0, nr_keys) and reports found / missing / checksum.
 *
 * The loops over the keys run through bpf_loop: a plain bounded loop of 100,000 iterations would
 * have the verifier walk every iteration. The bucket walks inside arena_htab.h are can_loop
 * (may_goto) loops, so a chain of any length is walked to the end. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 1 << 16, 0); /* 256 MiB of address space; pages cost only when used */

#include "arena_htab.h"

#define VALUE(key) ((key) * 7 + 3)

int nr_elems = 1000;   /* build: how many elements */
__u32 nr_buckets = 0;  /* build: 0 = 1024 */
int nr_keys = 1000;    /* lookup_all: keys 0 .. nr_keys - 1 are looked up */

struct arena_htab __arena *bpf_table; /* typed, so BTF describes the table */
struct arena_htab __arena *py_table;
int error;
__u64 found;
__u64 missing;
__u64 checksum; /* sum of the values found */

struct loop_ctx {
	arena_htab_t *h;
};

static long insert_cb(__u64 i, void *data)
{
	struct loop_ctx *c = data;
	int err = arena_htab_update(c->h, i, VALUE(i));

	if (err) {
		error = err;
		return 1;
	}
	return 0;
}

SEC("syscall")
int build(void *ctx)
{
	struct loop_ctx c;
	int err;

	c.h = bpf_alloc(sizeof(struct arena_htab));
	if (!c.h)
		return 1;
	err = arena_htab_init(c.h, nr_buckets);
	if (err) {
		error = err;
		return 2;
	}
	bpf_loop(nr_elems, insert_cb, &c, 0);
	bpf_table = c.h;
	return error ? 3 : 0;
}

static long lookup_cb(__u64 i, void *data)
{
	struct loop_ctx *c = data;
	arena_htab_elem_t *e = arena_htab_find(c->h, i);

	if (e) {
		found++;
		checksum += e->value;
	} else {
		missing++;
	}
	return 0;
}

SEC("syscall")
int lookup_all(void *ctx)
{
	struct loop_ctx c = { .h = py_table };

	if (!c.h)
		return 1;
	found = missing = checksum = 0;
	bpf_loop(nr_keys, lookup_cb, &c, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
