/* Acceptance audit: CO-RE field relocations (byte offset, existence, size) against vmlinux BTF,
 * with local type definitions that do not match the kernel's layout. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct task_struct {
	int pid;
	int tgid;
	int no_such_field_in_the_kernel;
} __attribute__((preserve_access_index));

__u64 out[6];

SEC("syscall")
int core(void *ctx)
{
	struct task_struct *t = 0;

	out[0] = __builtin_preserve_field_info(t->pid, 0);	/* byte offset */
	out[1] = __builtin_preserve_field_info(t->pid, 1);	/* byte size */
	out[2] = __builtin_preserve_field_info(t->pid, 2);	/* exists */
	out[3] = __builtin_preserve_field_info(t->no_such_field_in_the_kernel, 2);
	out[4] = __builtin_preserve_field_info(t->tgid, 0);
	out[5] = __builtin_preserve_field_info(t->tgid, 1);
	return 0;
}
