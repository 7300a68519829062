// SPDX-License-Identifier: MIT
/* htab.bpf.c: the benchmark workload, the arena hash table of include/arena_htab.h.
 *
 * bench_init builds an empty table with `n_buckets` buckets; bench_insert inserts keys
 * start..start+count-1 (value = key); bench_lookup looks the same keys up and leaves their sum in
 * `sum`. Inputs and outputs are .bss globals, set and read by bench/htab_bench.py. */
#include "bpfarena.h"

BPFARENA_MAP(arena, 8192, 0); /* 32 MiB */

#include "arena_htab.h"

arena_htab_t *table;
__u32 n_buckets;
__u32 start;
__u32 count;
__s64 sum;
int error;

SEC("syscall")
int bench_init(void *ctx)
{
	table = bpf_alloc(sizeof(*table));
	if (!table)
		return 1;
	error = arena_htab_init(table, n_buckets);
	return error ? 2 : 0;
}

static long insert_cb(__u64 i, void *data)
{
	int key = start + (__u32)i;

	if (arena_htab_update(table, key, key)) {
		error = 3;
		return 1;
	}
	return 0;
}

SEC("syscall")
int bench_insert(void *ctx)
{
	bpf_loop(count, insert_cb, NULL, 0);
	return error;
}

static long lookup_cb(__u64 i, void *data)
{
	sum += arena_htab_lookup(table, start + (__u32)i);
	return 0;
}

SEC("syscall")
int bench_lookup(void *ctx)
{
	bpfarena_use_map(arena); /* the callback casts arena pointers */
	sum = 0;
	bpf_loop(count, lookup_cb, NULL, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
