/* Acceptance audit (VM only): a loop the kernel verifier would refuse; the VM's instruction budget
 * must stop it with an error instead of hanging. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

volatile int stop;

SEC("syscall")
int spin(void *ctx)
{
	int n = 0;

	while (!stop)
		n++;
	return n;
}
