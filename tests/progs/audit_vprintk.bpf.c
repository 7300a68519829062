/* Acceptance audit: libbpf's bpf_printk with more than three arguments (bpf_trace_vprintk). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

SEC("syscall")
int vprintk(void *ctx)
{
	bpf_printk("v %d %d %d %d", 1, 2, 3, 4);	/* more than 3 args: bpf_trace_vprintk */
	bpf_printk("three %d %d %d", 5, 6, 7);
	return 0;
}

