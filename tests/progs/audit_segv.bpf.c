/* Acceptance audit: BPF_F_SEGV_ON_FAULT arena with map_extra just below a 4 GiB boundary. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT);
	__uint(max_entries, 2);
	__ulong(map_extra, 0x7e00ffffe000ULL);
} arena SEC(".maps");

__u64 out[4];

SEC("syscall")
int edge(void *ctx)
{
	char __arena *p = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	char __arena *q;

	if (!p)
		return -1;
	p[0] = 1;
	p[8191] = 2;
	out[0] = (__u64)p;
	q = p + 8192;		/* just past the end: wraps to the next 4 GiB low half 0 */
	out[1] = *(volatile char __arena *)q;
	q = p - 1;
	out[2] = *(volatile char __arena *)q;
	out[3] = (__u64)q;
	return p[0] + p[8191];
}
