/* A per-CPU array: BPF adds to this CPU's slot, Python sees one value per possible CPU. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

SEC("syscall")
int bump(void *ctx)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&pcpu, &k);

	if (!v)
		return -1;
	*v += 5;
	return 0;
}
