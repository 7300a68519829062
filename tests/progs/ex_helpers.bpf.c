// SPDX-License-Identifier: MIT
/* The helper prototypes and map macros of bpfarena.h, exercised once each. Returns 0, or the
 * number of the first check that failed. */
#include "bpfarena.h"

struct val {
	struct bpf_spin_lock lock;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct val);
} locked SEC(".maps");

__u64 t0, t1, loop_sum;
__u32 rnd_or, rnd_and, cpu;
long printk_ret;

static long add_cb(__u64 i, void *data)
{
	*(__u64 *)data += i + 1;
	return 0;
}

SEC("syscall")
int helpers(void *ctx)
{
	__u32 k = 7, z = 0;
	__u64 v = 42, *p, sum = 0;
	struct val *l;

	t0 = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&counts, &k, &v, BPF_NOEXIST))
		return 1;
	if (!bpf_map_update_elem(&counts, &k, &v, BPF_NOEXIST))
		return 2;
	p = bpf_map_lookup_elem(&counts, &k);
	if (!p || *p != 42)
		return 3;
	k = 8;
	if (bpf_map_lookup_elem(&counts, &k))
		return 4;
	v = 9;
	if (bpf_map_update_elem(&counts, &k, &v, BPF_ANY))
		return 5;
	k = 7;
	if (bpf_map_delete_elem(&counts, &k))
		return 6;
	if (bpf_map_lookup_elem(&counts, &k))
		return 7;
	rnd_or = rnd_and = bpf_get_prandom_u32();
	for (int i = 0; i < 8; i++) {
		__u32 r = bpf_get_prandom_u32();

		rnd_or |= r;
		rnd_and &= r;
	}
	cpu = bpf_get_smp_processor_id();
	l = bpf_map_lookup_elem(&locked, &z);
	if (!l)
		return 8;
	bpf_spin_lock(&l->lock);
	l->n += 5;
	bpf_spin_unlock(&l->lock);
	if (bpf_loop(10, add_cb, &sum, 0) != 10)
		return 9;
	loop_sum = sum;
	printk_ret = bpf_printk("hello %d", 42);
	t1 = bpf_ktime_get_ns();
	return 0;
}

char _license[] SEC("license") = "GPL";
