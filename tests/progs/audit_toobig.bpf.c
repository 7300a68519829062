/* Acceptance audit: arena globals (2 pages) larger than the arena (1 page): refused at load. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 1, 0);

__u64 __arena_global huge[1024];

SEC("syscall")
int touch(void *ctx)
{
	huge[1023] = 1;
	return 0;
}
