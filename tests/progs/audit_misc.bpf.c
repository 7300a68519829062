/* Acceptance audit: helpers, maps, global subprograms with __arg_arena, bpf_loop, spin locks. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 8, 0);

struct val {
	struct bpf_spin_lock lock;
	__u32 cnt;
	__u64 sum;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct val);
} locked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32);
	__type(key, __u64);
	__type(value, __s32);
} h SEC(".maps");

__u64 __arena_global counter;
__s16 small_signed = -3;
signed char sc = -128;
char msg[8] = "hi";
int loop_sum;

__noinline int arena_add(__u64 __arena *p __arg_arena, __u64 v)
{
	if (!p)
		return -1;
	*p += v;
	return (int)*p;
}

SEC("syscall")
int call_global(void *ctx)
{
	bpfarena_use_map(arena);
	return arena_add(&counter, 5) + arena_add(&counter, 10);	/* 5 + 15 */
}

SEC("syscall")
int printk(void *ctx)
{
	bpf_printk("audit %d %u", -5, 7);
	bpf_printk("second");
	return 1;
}

static int loop_cb(__u32 i, void *data)
{
	int *s = data;

	*s += i;
	return 0;
}

SEC("syscall")
int loop(void *ctx)
{
	int s = 0;

	bpf_loop(10, loop_cb, &s, 0);	/* 0 + ... + 9 */
	loop_sum = s;
	return s;
}

SEC("syscall")
int lock(void *ctx)
{
	__u32 k = 3;
	struct val init = {}, *v;

	bpf_map_update_elem(&locked, &k, &init, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&locked, &k);
	if (!v)
		return -1;
	bpf_spin_lock(&v->lock);
	v->cnt += 1;
	v->sum += 100;
	bpf_spin_unlock(&v->lock);
	return v->cnt;
}

static __always_inline void arr_step(__u32 i)
{
	__u64 *a = bpf_map_lookup_elem(&arr, &i);

	if (a)
		*a = *a * 2 + i;
}

static __always_inline void h_put(__u64 k)
{
	__s32 v = -(int)k;

	bpf_map_update_elem(&h, &k, &v, BPF_ANY);
}

SEC("syscall")
int maps(void *ctx)
{
	__u64 k;
	__s32 *a;

	arr_step(0);
	arr_step(1);
	arr_step(2);
	arr_step(3);
	h_put(1);
	h_put(2);
	h_put(3);
	k = 2;
	bpf_map_delete_elem(&h, &k);
	k = 100;		/* put there from Python */
	a = bpf_map_lookup_elem(&h, &k);
	return a ? *a : 7;
}

SEC("syscall")
int ctx_echo(__u64 *ctx)
{
	return (int)(ctx[0] + ctx[1]);
}

SEC("syscall")
int signed_ret(void *ctx)
{
	return small_signed + sc;	/* -131 */
}
