/* SPDX-License-Identifier: MIT */
/*
 * arena_alloc.h: a page-fragment allocator that lives in the arena.
 *
 *   void __arena *bpf_alloc(unsigned int size);   NULL when out of pages or size too big
 *   void bpf_free(void __arena *p);               NULL is ignored
 *
 * Before including, define the arena map (named `arena`, or #define BPFARENA_ALLOC_MAP to its
 * name). Allocation calls bpf_arena_alloc_pages, so (before Linux 7.0) only sleepable programs
 * such as SEC("syscall") may allocate.
 *
 * Layout (what a Python reader can rely on):
 * - Each CPU has a current page and a current offset, kept in two arena globals
 *   (`bpfarena_alloc_page[]`, `bpfarena_alloc_off[]`, BPFARENA_NR_CPUS entries each).
 * - A size is rounded up to 8; a request of PAGE_SIZE - 8 bytes or more fails.
 * - Objects are carved downward from offset PAGE_SIZE - 8 of the page. The last 8 bytes of every
 *   page hold a u64 counter: the number of live objects in the page, plus one while the page is
 *   some CPU's current page. So a page is released exactly when its last object is freed and
 *   the allocator has moved on from it (a fresh current page is never released under the
 *   allocator's feet).
 * - When an object does not fit, the current page is retired (its +1 dropped, freed if that was
 *   the last reference) and a new page is taken with bpf_arena_alloc_pages(NULL, 1).
 * - bpf_free rounds the pointer down to its page and decrements the counter atomically.
 */
#ifndef BPFARENA_ARENA_ALLOC_H
#define BPFARENA_ARENA_ALLOC_H

#include "bpfarena.h"

#if defined(__bpf__) && (!defined(__BPF_FEATURE_ADDR_SPACE_CAST) || defined(BPFARENA_FORCE_ASM))
#error "arena_alloc.h needs clang's __arena address space (clang >= 19, no BPFARENA_FORCE_ASM)"
#endif

#if defined(__bpf__) /* user-space C gets nothing from this header */

#ifndef BPFARENA_ALLOC_MAP
#define BPFARENA_ALLOC_MAP arena
#endif
#ifndef BPFARENA_NR_CPUS
#define BPFARENA_NR_CPUS 64
#endif

#define BPFARENA_ALLOC_CNT_OFF (PAGE_SIZE - 8)

void __arena *bpfarena_alloc_page[BPFARENA_NR_CPUS] __arena_global;
__u32 bpfarena_alloc_off[BPFARENA_NR_CPUS] __arena_global;

static inline __u64 __arena *bpfarena_page_counter(void __arena *p)
{
	__u64 page = (__u64)p & ~(__u64)(PAGE_SIZE - 1);

	return (__u64 __arena *)(page + BPFARENA_ALLOC_CNT_OFF);
}

/* drop one reference to the page holding p; release the page at zero */
static inline void bpfarena_page_put(void __arena *p)
{
	__u64 __arena *cnt = bpfarena_page_counter(p);

	if (__sync_sub_and_fetch(cnt, 1) == 0)
		bpf_arena_free_pages(&BPFARENA_ALLOC_MAP,
				     (void __arena *)((__u64)p & ~(__u64)(PAGE_SIZE - 1)), 1);
}

static inline void __arena *bpf_alloc(unsigned int size)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void __arena *page;
	__u32 off;

	if (cpu >= BPFARENA_NR_CPUS)
		return NULL;
	size = (size + 7) & ~7U;
	if (size >= PAGE_SIZE - 8)
		return NULL;

	page = bpfarena_alloc_page[cpu];
	off = bpfarena_alloc_off[cpu];
	if (!page || off < size) {
		void __arena *fresh = bpf_arena_alloc_pages(&BPFARENA_ALLOC_MAP, NULL, 1,
							    NUMA_NO_NODE, 0);

		if (!fresh)
			return NULL;
		/* one reference for being current; the new page is already zeroed */
		*bpfarena_page_counter(fresh) = 1;
		if (page)
			bpfarena_page_put(page);
		page = fresh;
		off = BPFARENA_ALLOC_CNT_OFF;
		bpfarena_alloc_page[cpu] = page;
	}
	off -= size;
	bpfarena_alloc_off[cpu] = off;
	__sync_fetch_and_add(bpfarena_page_counter(page), 1);
	return (char __arena *)page + off;
}

static inline void bpf_free(void __arena *p)
{
	if (!p)
		return;
	bpfarena_page_put(p);
}

#endif /* __bpf__ */
#endif /* BPFARENA_ARENA_ALLOC_H */
