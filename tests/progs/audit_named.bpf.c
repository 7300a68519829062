/* Acceptance audit: the arena map is not called `arena` and is __weak (as sched_ext declares it),
 * with 2 pages of arena globals and a global function shared by two programs. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8);
} mem __weak SEC(".maps");

__u64 __arena_global table[1024];	/* two pages */
__u64 __arena_global tail = 99;

__noinline int bump(__u64 __arena *slot __arg_arena, int by)
{
	if (!slot)
		return 0;
	*slot += by;
	return 1;
}

SEC("syscall")
int one(void *ctx)
{
	bpfarena_use_map(mem);
	return bump(&table[0], 1) + bump(&table[1023], 2) + bump(&tail, 1);
}

SEC("syscall")
int two(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&mem, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	bump(p, 41);
	table[5] = (__u64)p;
	return (int)*p;
}
