/* Acceptance audit: a raw_tp program gated on the caller's pid, as the kernel's arena_atomics
 * selftest is, plus the other helpers arena programs commonly call. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 2, 0);

__u32 pid;
__u64 __arena_global hits;
__u64 seen[4];

SEC("raw_tp/sys_enter")
int gated(const void *ctx)
{
	__u64 t0 = bpf_ktime_get_ns(), t1;

	if (pid != (__u32)(bpf_get_current_pid_tgid() >> 32))
		return 1;
	__sync_fetch_and_add(&hits, 1);
	t1 = bpf_ktime_get_ns();
	seen[0] = t1 >= t0;
	seen[1] = bpf_get_smp_processor_id() < 4096;
	seen[2] = bpf_get_prandom_u32() != bpf_get_prandom_u32() || bpf_get_prandom_u32() != 0;
	seen[3] = bpf_get_current_pid_tgid() & 0xffffffff;	/* tid */
	return 0;
}
