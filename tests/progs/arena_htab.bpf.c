// SPDX-License-Identifier: MIT
/* arena_htab: a hash table in a 100-page arena, built by a syscall program.
 * Contract: returns 0; htab_for_user (.bss) holds the table's user address; lookup(i) == i for
 * i in 0..999 after every key has been inserted twice (the second round replaces each element). */
#include "bpfarena.h"

BPFARENA_MAP(arena, 100, 0);

#include "arena_htab.h"

void __arena *htab_for_user;
int build_error;

struct build_ctx {
	arena_htab_t *h;
	int err;
};

static long insert_one(__u64 i, void *data)
{
	struct build_ctx *c = data;
	int key = i % 1000; /* two rounds over 0..999 */
	int err = arena_htab_update(c->h, key, key);

	if (err) {
		c->err = err;
		return 1;
	}
	return 0;
}

static long check_one(__u64 i, void *data)
{
	struct build_ctx *c = data;

	if (arena_htab_lookup(c->h, i) != (int)i) {
		c->err = 100 + i;
		return 1;
	}
	return 0;
}

SEC("syscall")
int arena_htab_build(void *ctx)
{
	struct build_ctx c = {};
	int err;

	c.h = bpf_alloc(sizeof(*c.h));
	if (!c.h)
		return 1;
	err = arena_htab_init(c.h, 0);
	if (err) {
		build_error = err;
		return 2;
	}
	htab_for_user = c.h;
	bpf_loop(2000, insert_one, &c, 0);
	if (c.err) {
		build_error = c.err;
		return 3;
	}
	bpf_loop(1000, check_one, &c, 0);
	if (c.err) {
		build_error = c.err;
		return 4;
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
