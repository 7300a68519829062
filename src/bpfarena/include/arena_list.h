/* SPDX-License-Identifier: MIT */
/*
 * arena_list.h: an hlist-style doubly linked list whose nodes and heads live in the arena.
 *
 * Layout (Python's bpfarena.ds.ArenaList reads and writes the same bytes):
 *   struct arena_list_node { u64 next; u64 pprev; }   16 bytes
 *   struct arena_list_head { u64 first; }              8 bytes
 * `next` and `first` hold the user-form address of the next *node* (not of the containing object),
 * 0 at the end. `pprev` holds the user-form address of the pointer that points at this node (the
 * previous node's `next`, or the head's `first`). Embed a node in your object and get back to the
 * object with arena_container_of / arena_list_entry.
 *
 * The head must be in the arena too (an arena global or arena memory), since `pprev` points at it.
 */
#ifndef BPFARENA_ARENA_LIST_H
#define BPFARENA_ARENA_LIST_H

#include "bpfarena.h"

#if defined(__bpf__) && (!defined(__BPF_FEATURE_ADDR_SPACE_CAST) || defined(BPFARENA_FORCE_ASM))
#error "arena_list.h needs clang's __arena address space (clang >= 19, no BPFARENA_FORCE_ASM)"
#endif

struct arena_list_node;
typedef struct arena_list_node __arena arena_list_node_t;

struct arena_list_node {
	arena_list_node_t *next;
	arena_list_node_t * __arena *pprev;
};

struct arena_list_head {
	arena_list_node_t *first;
};
typedef struct arena_list_head __arena arena_list_head_t;

#define arena_list_entry(ptr, type, member) arena_container_of(ptr, type, member)
/* like arena_list_entry, but NULL stays NULL */
#define arena_list_entry_safe(ptr, type, member)                                           \
	({                                                                                 \
		arena_list_node_t *___p = (ptr);                                           \
		___p ? arena_list_entry(___p, type, member) : 0;                           \
	})

static inline bool arena_list_empty(arena_list_head_t *h)
{
	return !h->first;
}

static inline void arena_list_init_head(arena_list_head_t *h)
{
	h->first = NULL;
}

/* insert n at the front of h */
static inline void arena_list_add_head(arena_list_node_t *n, arena_list_head_t *h)
{
	arena_list_node_t *first = h->first;

	n->next = first;
	if (first)
		first->pprev = &n->next;
	n->pprev = &h->first;
	h->first = n;
}

/* unlink n; its next/pprev become 0 (a deleted node looks like a fresh one) */
static inline void arena_list_del(arena_list_node_t *n)
{
	arena_list_node_t *next = n->next;
	arena_list_node_t * __arena *pprev = n->pprev;

	if (pprev)
		*pprev = next;
	if (next)
		next->pprev = pprev;
	/* volatile: two adjacent zero stores would otherwise merge into a memset, which clang 19
	 * emits on the uncast (user-form) pointer */
	*(arena_list_node_t * volatile __arena *)&n->next = NULL;
	*(arena_list_node_t * __arena * volatile __arena *)&n->pprev = NULL;
}

/* the object of pos's type that holds node `ptr` (NULL stays NULL); pos's type already carries
 * __arena, so cast to typeof(pos) rather than adding the qualifier again */
#define __arena_list_pos(ptr, pos, member)                                                 \
	({                                                                                 \
		arena_list_node_t *___n = (ptr);                                           \
		___n ? (typeof(pos))((char __arena *)___n - offsetof(typeof(*(pos)), member))   \
		     : (typeof(pos))0;                                                      \
	})

/*
 * for (pos over every object of type typeof(*pos) linked through `member` from head). The walk is
 * guarded by can_loop (may_goto), so the verifier checks the body once and the list may be of
 * any length: only the frame's may_goto budget (8M steps, shared with the frame's other may_goto
 * loops; a time budget on x86-64 since Linux 6.15) ends it early. After the loop, pos is NULL when
 * the walk reached the end, and non-NULL when it stopped early (a `break`, or the budget spent).
 */
#define arena_list_for_each_entry(pos, head, member)                                       \
	for ((pos) = __arena_list_pos((head)->first, pos, member); (pos) && can_loop;       \
	     (pos) = __arena_list_pos((pos)->member.next, pos, member))

/*
 * The same walk, also stopped after `max` steps, for a program that wants a bound of its own
 * (e.g. to give up early on a corrupted, cyclic list). A run-time `max` (a global, a map value)
 * may be large: the verifier does not know the counter's value and checks the body once. With a
 * compile-time constant `max` it tracks the counter exactly and so follows every step: keep a
 * constant `max` to a few thousand (100,000 exceeds the verifier's 1M-instruction limit).
 */
#define arena_list_for_each_entry_bounded(pos, head, member, max)                          \
	for (long ___i = ((pos) = __arena_list_pos((head)->first, pos, member), 0);           \
	     (pos) && ___i < (long)(max) && can_loop;                                      \
	     (pos) = __arena_list_pos((pos)->member.next, pos, member), ___i++)

/* one step of a walk, for hand-written loops and bpf_loop callbacks */
static inline arena_list_node_t *arena_list_next(arena_list_node_t *n)
{
	return n ? n->next : NULL;
}

#endif /* BPFARENA_ARENA_LIST_H */
