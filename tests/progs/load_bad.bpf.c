/* Programs the verifier must reject. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

SEC("syscall")
int uninit_read(void *ctx)
{
	int r;

	/* read a register that was never written */
	asm volatile("%[r] = r5" : [r] "=r"(r));
	return r;
}

SEC("syscall")
int stack_oob(void *ctx)
{
	int r;

	asm volatile("r1 = 7; *(u64 *)(r10 + 8) = r1; r0 = 0" : "=r"(r) :: "r1");
	return r;
}

SEC("syscall")
int fine(void *ctx)
{
	return 7;
}
