/* Acceptance audit: one good program and one the verifier must reject. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

__u64 buf[2];

SEC("syscall")
int good(void *ctx)
{
	return 3;
}

SEC("syscall")
int bad_stack(void *ctx)
{
	volatile char x[8];
	int i = buf[0];

	return x[i];	/* unbounded variable stack offset, uninitialized */
}
