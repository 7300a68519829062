/* Test object for the object reader: several programs, subprograms, maps, globals, arena. */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __ulong(name, val) enum { ___bpf_concat(__unique_value, __COUNTER__) = val } name
#define ___bpf_concat(a, b) a##b
#define __ksym __attribute__((section(".ksyms")))
#define __weak __attribute__((weak))
#define __arena __attribute__((address_space(1)))

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_ARENA 33
#define BPF_F_MMAPABLE 1024
#define BPF_F_NO_PREALLOC 1

struct val { __u64 a; __u32 b; __u32 c; };

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 10);
	__ulong(map_extra, 0x100000000ULL << 4);
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct val);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} hmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 16);
	__uint(max_entries, 4);
	__uint(pinning, 1);
} amap SEC(".maps");

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_loop)(__u32 nr, void *fn, void *ctx, __u64 flags) = (void *)181;

extern void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
					   int node_id, __u64 flags) __ksym __weak;
extern void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym;

int data_var = 7;
__u64 data_var2 = 0x1122334455667788ULL;
int bss_var;
__u64 bss_arr[4];
const volatile int ro_var = 42;
const char ro_str[] = "hello";

int __arena arena_counter = 5;
__u64 __arena arena_vals[3] = {1, 2, 3};
int __arena arena_zero;

struct task_struct { int pid; int tgid; } __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "GPL";

static __attribute__((noinline)) int add_static(int x)
{
	return x + data_var;
}

__attribute__((noinline)) int shared_sub(int x)
{
	return add_static(x) * 2 + bss_var;
}

static int loop_cb(__u32 i, void *ctx)
{
	bss_arr[i & 3] += i;
	return 0;
}

SEC("syscall")
int prog_arena(void *ctx)
{
	int __arena *p = bpf_arena_alloc_pages(&arena, 0, 1, -1, 0);
	if (!p)
		return 1;
	*p = arena_counter + (int)arena_vals[1];
	arena_zero = *p;
	bpf_arena_free_pages(&arena, p, 1);
	return shared_sub(ro_var);
}

SEC("syscall")
int prog_map(void *ctx)
{
	__u32 k = 0;
	struct val *v = bpf_map_lookup_elem(&hmap, &k);
	if (v)
		return v->b + shared_sub(1);
	v = bpf_map_lookup_elem(&amap, &k);
	return v ? ro_str[1] : data_var2;
}

SEC("tp_btf/sched_switch")
int prog_loop(void *ctx)
{
	bpf_loop(4, loop_cb, 0, 0);
	return 0;
}

SEC("fentry.s/do_nanosleep")
int prog_core(struct task_struct *t)
{
	/* CO-RE: byte offset (kind 0), field size (kind 1) and field existence (kind 2) */
	return t->tgid + __builtin_preserve_field_info(t->pid, 1) * 100 +
	       __builtin_preserve_field_info(t->pid, 2) * 1000;
}
