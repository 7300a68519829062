// SPDX-License-Identifier: MIT
/* Arena access without clang's address spaces: build with -DBPFARENA_FORCE_ASM, so __arena is
 * empty and cast_kern/cast_user emit addr_space_cast themselves (the selftests' *_asm flavour).
 * Contract: returns 0; `out` holds the user address of a page whose first u32 is 7 and whose
 * second u32 is the low half of that same address (written through the kernel-form pointer). */
#include "bpfarena.h"

BPFARENA_MAP(arena, 16, 0);

__u64 out;

SEC("syscall")
int asm_casts(void *ctx)
{
	__u32 *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 user;

	if (!p)
		return 1;
	user = (__u64)p;
	cast_kern(p);
	p[0] = 7;
	p[1] = (__u32)user;
	cast_user(p);
	out = (__u64)p;
	return out == user ? 0 : 2;
}

char _license[] SEC("license") = "GPL";
