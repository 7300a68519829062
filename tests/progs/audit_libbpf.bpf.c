/* Acceptance audit: a program written against libbpf's own headers (as the kernel selftests are),
 * not bpfarena's: <linux/bpf.h> + <bpf/bpf_helpers.h> and self-contained arena definitions. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef PAGE_SIZE
#define PAGE_SIZE 4096
#endif
#define __arena __attribute__((address_space(1)))
#ifndef __ulong
#define __ulong(name, val) enum { ___bpf_concat(__unique_value, __COUNTER__) = val } name
#endif

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, 33 /* BPF_MAP_TYPE_ARENA: Debian 12 headers predate it */);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 10);
	__ulong(map_extra, (1ull << 44) | (~0u - 2 * PAGE_SIZE * 5 + 1));
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt, int node_id,
				    __u64 flags) __ksym __weak;
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym __weak;
int bpf_arena_reserve_pages(void *map, void __arena *addr, __u32 page_cnt) __ksym __weak;
/* a weak kfunc that does not exist: fine as long as it is never called */
int bpf_audit_no_such_kfunc(int x) __ksym __weak;

char __arena big[5000];			/* spans two pages of globals */
__u64 __arena sum64 = 1ULL << 40;
int __arena __attribute__((aligned(8))) after_big = -2;
const char names[3][8] = {"zero", "one", "two"};
const volatile __u32 ro_knob = 3;
int custom_data SEC(".data.custom") = 17;
__u64 out[8];

SEC("syscall")
int fill(void *ctx)
{
	int i;

	for (i = 0; i < 5000; i += 1000)
		big[i] = names[i / 1000 % 3][0];
	big[4999] = 'Z';
	sum64 += ro_knob + custom_data;
	out[0] = (__u64)&big[4999];
	out[1] = (__u64)&after_big;
	if (bpf_audit_no_such_kfunc)
		out[2] = bpf_audit_no_such_kfunc(1);
	else
		out[2] = 12345;
	return after_big;
}

SEC("syscall")
int edge_alloc(void *ctx)
{
	/* this arena ends 10 pages below a 4 GiB boundary of the user range */
	char __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, -1, 0);
	char __arena *q = bpf_arena_alloc_pages(&arena, NULL, 1, -1, 1);	/* flags != 0 */
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&pcpu, &k);

	if (v)
		*v += 1;
	out[3] = (__u64)p;
	out[4] = (__u64)q;
	if (!p)
		return -1;
	p[0] = 'A';
	bpf_arena_free_pages(&arena, (void __arena *)(p + 100), 1);	/* unaligned: rounds down */
	out[5] = *(volatile char __arena *)p;
	return 0;
}

SEC("tc")
int tc_arena(struct __sk_buff *skb)
{
	/* arena globals from a non-sleepable program: no kfuncs, plain accesses */
	sum64 += skb->len;
	return 7;
}
