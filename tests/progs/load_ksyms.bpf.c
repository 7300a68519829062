/* kfunc and __ksym resolution: a real arena kfunc, an absent weak kfunc guarded by an existence
 * test, and a typed kernel variable. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 4, 0);

extern void bpfarena_no_such_kfunc(int x) __ksym __weak;

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));
extern struct task_struct init_task __ksym;

SEC("syscall")
int weak_missing(void *ctx)
{
	if (bpfarena_no_such_kfunc) {
		bpfarena_no_such_kfunc(1);
		return 1;
	}
	return 2;
}

SEC("syscall")
int ksym_var(void *ctx)
{
	return &init_task != 0;
}
