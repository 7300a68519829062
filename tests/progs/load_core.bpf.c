/* CO-RE against vmlinux BTF without tracing: field offset/size/existence as return values. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct bpf_map___local {
	__u32 max_entries;
	int no_such_field_here;
} __attribute__((preserve_access_index));

int off_tgid, size_pid, has_bogus, has_max;

SEC("syscall")
int core_offsets(void *ctx)
{
	struct task_struct *t = 0;
	struct bpf_map___local *m = 0;

	off_tgid = __builtin_preserve_field_info(t->tgid, 0);	/* FIELD_BYTE_OFFSET */
	size_pid = __builtin_preserve_field_info(t->pid, 1);	/* FIELD_BYTE_SIZE */
	has_max = __builtin_preserve_field_info(m->max_entries, 2); /* FIELD_EXISTS */
	has_bogus = __builtin_preserve_field_info(m->no_such_field_here, 2);
	return off_tgid;
}
