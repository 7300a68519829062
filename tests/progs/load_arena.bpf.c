/* Arena globals with initial values, and pages allocated from BPF then read from Python. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 16, 0);

int __arena_global a_value = 42;
__u64 __arena_global a_seen;
char __arena_global a_name[8] = "arena";
__u64 __arena *__arena_global a_ptr;
__u64 alloc_addr;			/* .bss: the user address BPF got */

SEC("syscall")
int read_globals(void *ctx)
{
	a_seen = a_value * 2;
	return a_value;
}

SEC("syscall")
int alloc(void *ctx)
{
	__u64 __arena *p;
	int i;

	p = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	if (!p)
		return -1;
	for (i = 0; i < 8; i++)
		p[i] = 1000 + i;
	p[512] = 0xdeadbeef;		/* second page */
	a_ptr = p;
	alloc_addr = (__u64)p;
	return 0;
}
