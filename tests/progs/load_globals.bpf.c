/* Globals in .data/.bss/.rodata, a hash map and an array map, a subprogram call. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __s64);
} slots SEC(".maps");

int counter = 5;			/* .data */
long long negative = -7;		/* .data */
int bss_result;				/* .bss */
int arr[4];				/* .bss */
char greeting[16] = "hello";		/* .data */
const volatile int ro_factor = 3;	/* .rodata */

static __noinline int triple_plus(int x)
{
	return x * ro_factor + 1;
}

SEC("syscall")
int compute(void *ctx)
{
	int i;

	counter += 1;
	bss_result = triple_plus(counter);
	for (i = 0; i < 4; i++)
		arr[i] = counter * (i + 1);
	greeting[0] = 'j';
	return bss_result;
}

SEC("syscall")
int use_maps(void *ctx)
{
	__u32 k;
	__u64 *v, one = 1;
	__s64 *s;
	int sum = 0;

#pragma unroll
	for (int i = 1; i <= 3; i++) {
		k = i;
		v = bpf_map_lookup_elem(&counts, &k);
		if (v)
			sum += *v;
		else
			bpf_map_update_elem(&counts, &k, &one, BPF_ANY);
	}
	k = 2;
	s = bpf_map_lookup_elem(&slots, &k);
	if (s)
		*s = negative;
	return sum;
}
