/* Test object: programs sharing a section, static helpers in a program section, string
 * literals, map-in-map, a custom data section, a typed __ksym variable, a version section. */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __ksym __attribute__((section(".ksyms")))

struct inner {
	__uint(type, 2);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, __u64);
};

struct {
	__uint(type, 12);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, struct inner);
} outer SEC(".maps");

extern const int bpf_prog_active __ksym;

int custom_var SEC(".data.custom") = 3;
static int hidden = 11;
volatile int idx;

char LICENSE[] SEC("license") = "Dual BSD/GPL";
int _version SEC("version") = 0x41400;

static __attribute__((noinline)) SEC("xdp") int xdp_helper(int x)
{
	return x * 3 + hidden;
}

SEC("xdp")
int xdp_a(void *ctx)
{
	return xdp_helper(1);
}

SEC("xdp")
int xdp_b(void *ctx)
{
	return xdp_helper(2) + custom_var;
}

SEC("kprobe/do_sys_open")
int kp(void *ctx)
{
	const char *s = "abcdef";
	const char *t = "xyz";
	return s[idx] + t[idx];
}

SEC("no_such_type")
int odd(void *ctx)
{
	return 0;
}

SEC("tc")
long tc_ksym(void *ctx)
{
	return (long)&bpf_prog_active;
}
