/* Acceptance audit: an arena with BPF_F_NO_USER_CONV, and map_extra placement. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_NO_USER_CONV);
	__uint(max_entries, 4);
	__ulong(map_extra, 0x3ff00000000ULL);	/* low half 0: page 0 looks like NULL */
} arena SEC(".maps");

__u64 __arena_global first = 7;
__u64 __arena_global slot;
__u64 out[4];

SEC("syscall")
int conv(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	out[0] = (__u64)p;		/* no user conversion: low 32 bits only */
	out[1] = (__u64)&slot;
	if (p) {
		*p = 3;
		slot = (__u64)p;
	}
	out[2] = first;
	return 0;
}

SEC("syscall")
int ucast(void *ctx)
{
	__u64 __arena *p = &slot;
	__u64 __arena *q;
	void *k = (void *)p;

	asm volatile("" : "+r"(k));
	out[0] = (__u64)k;
	q = (__u64 __arena *)k;		/* BPF_F_NO_USER_CONV: stays the low 32 bits */
	out[1] = (__u64)q;
	return 0;
}
