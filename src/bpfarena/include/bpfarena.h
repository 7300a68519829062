/* SPDX-License-Identifier: MIT */
/*
 * bpfarena.h: the basics for BPF C programs that use an arena (BPF_MAP_TYPE_ARENA).
 *
 * Compile with `bpfarena cc prog.bpf.c` (clang-19 -O2 -g -target bpf -mcpu=v3 -I<this dir>).
 * Provides: fixed-width types, SEC(), libbpf-compatible BTF map-definition macros, __ksym/__weak,
 * __arena / __arena_global / cast_kern / cast_user / __arg_arena, can_loop / cond_break (may_goto
 * loops), helper prototypes, the arena kfuncs, and the UAPI constants arena programs need.
 *
 * Pointer model: a `T __arena *` holds the *user* form of an arena address (the full 64-bit address
 * user space sees). clang turns every dereference into addr_space_cast(as1 -> as0) first, so the
 * values stored in arena memory are user-form pointers, which is what Python code must write.
 *
 * clang 19 pitfall: a struct assignment, `= {}` or memset/memcpy on arena memory becomes a
 * memset/memcpy intrinsic that clang 19 lowers on the *uncast* pointer, and the verifier rejects
 * it ("invalid mem access 'scalar'"). Store field by field (volatile where stores would merge).
 *
 * If you also include <linux/bpf.h> or a vmlinux.h, include it *before* this header: the UAPI
 * constants below are then taken from it (any arena ones an older <linux/bpf.h> lacks are added
 * as macros). Including it *after* fails, since its enums would meet our macros. The
 * BPFARENA_MAP_TYPE_ARENA / BPFARENA_F_* names work in every case.
 *
 * From user-space C (no __bpf__) every BPF-only macro expands to nothing, so shared struct
 * definitions can be compiled on both sides.
 */
#ifndef BPFARENA_H
#define BPFARENA_H

/* ---- fixed-width types ------------------------------------------------------------------- */
#if defined(__bpf__)
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
#ifndef __cplusplus
typedef _Bool bool;
#define true 1
#define false 0
#endif
#ifndef NULL
#define NULL ((void *)0)
#endif
#else
#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#endif

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

#ifndef PAGE_SIZE
#define PAGE_SIZE 4096
#endif
#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

/* ---- arena constants under our own names ---------------------------------------------------
 * Always defined, whatever else was included: the UAPI names are enum members in <linux/bpf.h>
 * (so `#ifndef` cannot tell whether they exist) and headers older than Linux 6.9, such as
 * Debian 12's, lack the arena ones. */
#define BPFARENA_MAP_TYPE_ARENA 33
#define BPFARENA_F_MMAPABLE (1U << 10)
#define BPFARENA_F_SEGV_ON_FAULT (1U << 17)
#define BPFARENA_F_NO_USER_CONV (1U << 18)

/* <linux/bpf.h> came first but predates arenas (UAPI headers < 6.9): add the missing names as
 * macros. Headers >= 6.9 declare them as enum members, so a macro would clash there. */
#if (defined(_UAPI__LINUX_BPF_H__) || defined(__LINUX_BPF_H__)) && !defined(__VMLINUX_H__) && \
	defined(__has_include)
#if __has_include(<linux/version.h>)
#include <linux/version.h>
#if defined(LINUX_VERSION_CODE) && LINUX_VERSION_CODE < ((6 << 16) | (9 << 8))
#ifndef BPF_MAP_TYPE_ARENA
#define BPF_MAP_TYPE_ARENA BPFARENA_MAP_TYPE_ARENA
#endif
#ifndef BPF_F_SEGV_ON_FAULT
#define BPF_F_SEGV_ON_FAULT BPFARENA_F_SEGV_ON_FAULT
#endif
#ifndef BPF_F_NO_USER_CONV
#define BPF_F_NO_USER_CONV BPFARENA_F_NO_USER_CONV
#endif
#endif
#endif
#endif

/* ---- UAPI constants (include/uapi/linux/bpf.h) -------------------------------------------- */
/* skipped when <linux/bpf.h> (guard _UAPI__LINUX_BPF_H__ in the kernel tree and libbpf,
 * __LINUX_BPF_H__ once installed in /usr/include) or a vmlinux.h came first (they define the same names), or on
 * request with -DBPFARENA_NO_UAPI */
#if !defined(_UAPI__LINUX_BPF_H__) && !defined(__LINUX_BPF_H__) && !defined(__VMLINUX_H__) && \
	!defined(BPFARENA_NO_UAPI)
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_ARENA 33

#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_MMAPABLE (1U << 10)
#define BPF_F_SEGV_ON_FAULT (1U << 17)
#define BPF_F_NO_USER_CONV (1U << 18)

#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2

#if defined(__bpf__)
struct bpf_spin_lock {
	__u32 val;
};
#endif
#endif /* UAPI constants */

#if defined(__bpf__)

/* ---- attributes and sections --------------------------------------------------------------- */
#define SEC(name) __attribute__((section(name), used))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif
#define __ksym __attribute__((section(".ksyms")))
#define __hidden __attribute__((visibility("hidden")))
#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif
#ifndef barrier
#define barrier() asm volatile("" ::: "memory")
#endif

/* ---- loops the verifier checks once: may_goto (Linux 6.9+) ------------------------------------
 * may_goto is a conditional jump that the kernel takes only once the program frame's loop budget
 * is spent (shared by every may_goto loop of one frame: 8M steps before 6.15; on x86-64 since 6.15,
 * and in bpfarena's VM, about 250 ms of time). The verifier need not follow every iteration of a
 * loop guarded by it, so such a loop may run for as long as the data needs:
 *     while (p && can_loop) p = p->next;        for (;;) { cond_break; ... }
 * `can_loop` is true while budget remains; `cond_break` breaks out of the enclosing loop when it is
 * spent (and `cond_break_label(l)` jumps to l). clang 19 knows the mnemonic
 * (__BPF_FEATURE_MAY_GOTO); older assemblers get the raw instruction: code 0xe5, zero registers,
 * off = the jump distance in instructions minus one, imm 0. The assembler resolves the label
 * difference only as a 32-bit value, so off and the low half of imm are written as one .long. */
#ifdef __BPF_FEATURE_MAY_GOTO
#define __bpfarena_may_goto(label) asm volatile goto("may_goto %l[" #label "]" :::: label)
#else
#define __bpfarena_may_goto(label)                                                         \
	asm volatile goto("1: .byte 0xe5, 0\n"                                                  \
			  ".long ((%l[" #label "] - 1b - 8) / 8) & 0xffff\n"                     \
			  ".short 0\n" :::: label)
#endif
#ifndef can_loop
#define can_loop                                                                           \
	({                                                                                 \
		__label__ ___bpfarena_spent, ___bpfarena_go;                               \
		bool ___bpfarena_ok = true;                                                \
		__bpfarena_may_goto(___bpfarena_spent);                                    \
		goto ___bpfarena_go;                                                       \
	___bpfarena_spent:                                                                 \
		___bpfarena_ok = false;                                                    \
	___bpfarena_go:                                                                    \
		___bpfarena_ok;                                                            \
	})
#endif
#ifndef cond_break
#define cond_break                                                                         \
	({                                                                                 \
		__label__ ___bpfarena_spent, ___bpfarena_go;                               \
		__bpfarena_may_goto(___bpfarena_spent);                                    \
		goto ___bpfarena_go;                                                       \
	___bpfarena_spent:                                                                 \
		break;                                                                     \
	___bpfarena_go:;                                                                   \
	})
#endif
#ifndef cond_break_label
#define cond_break_label(label) __bpfarena_may_goto(label)
#endif

/* ---- BTF-defined map macros (the encoding libbpf reads from .maps) ------------------------- */
#define ___bpfarena_concat(a, b) a##b
#define ___bpfarena_cat(a, b) ___bpfarena_concat(a, b)
/* an int field: the value is the array dimension of a pointer-to-array type */
#define __uint(name, val) int (*name)[val]
/* a type field: a pointer to the type */
#define __type(name, val) typeof(val) *name
/* an array of inner map definitions */
#define __array(name, val) typeof(val) *name[]
/* a 64-bit field (map_extra): the value of a one-constant anonymous enum */
#define __ulong(name, val) enum { ___bpfarena_cat(__bpfarena_ulong_, __COUNTER__) = (val) } name

/* An arena map definition: BPFARENA_MAP(arena, 100, 0); (map_extra 0: the kernel picks the
 * address at the first mmap). Allocator/list/htab headers expect the map to be named `arena`. */
#define BPFARENA_MAP(name, pages, extra)                                                   \
	struct {                                                                           \
		__uint(type, BPFARENA_MAP_TYPE_ARENA);                                     \
		__uint(map_flags, BPFARENA_F_MMAPABLE);                                    \
		__uint(max_entries, pages);                                                \
		__ulong(map_extra, extra);                                                 \
	} name SEC(".maps")

/* ---- arena pointers --------------------------------------------------------------------- */
#if defined(__BPF_FEATURE_ADDR_SPACE_CAST) && !defined(BPFARENA_FORCE_ASM)
/* clang inserts the casts itself; arena globals go to .addr_space.1 on their own */
#define __arena __attribute__((address_space(1)))
#define __arena_global __attribute__((address_space(1)))
#define cast_kern(ptr) /* nothing: clang casts on dereference */
#define cast_user(ptr) /* nothing */
#else
/* no compiler support: plain pointers, explicit casts in place (imm 1 = to kernel form,
 * imm 0x10000 = to user form) */
#define __arena
#define __arena_global SEC(".addr_space.1")
#define cast_kern(ptr) asm volatile("%[r] = addr_space_cast(%[r], 0, 1)" : [r] "+r"(ptr))
#define cast_user(ptr) asm volatile("%[r] = addr_space_cast(%[r], 1, 0)" : [r] "+r"(ptr))
#endif

/* tag a global function's argument as an arena pointer (BTF decl tag "arg:arena") */
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))

/* the arena object that holds `member` at `ptr` */
#define arena_container_of(ptr, type, member)                                              \
	((type __arena *)((char __arena *)(ptr) - offsetof(type, member)))

/* Make the program itself reference the arena map (the verifier wants that before it accepts
 * addr_space_cast in a program that reaches the arena only through global functions). */
#define bpfarena_use_map(map) asm volatile("" ::"r"(&(map)))

/* ---- helpers (ids from enum bpf_func_id) ---------------------------------------------------- */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static long (*bpf_probe_read)(void *dst, __u32 size, const void *src) = (void *)4;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)7;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *)93;
static long (*bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *)94;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			__u64 flags) = (void *)181;

/* bpf_printk("x=%d", x): trace_printk with the format in .rodata (at most 3 arguments) */
#define bpf_printk(fmt, ...)                                                                \
	({                                                                                 \
		static const char ___bpfarena_fmt[] = fmt;                                 \
		bpf_trace_printk(___bpfarena_fmt, sizeof(___bpfarena_fmt), ##__VA_ARGS__);  \
	})

/* ---- arena kfuncs (kernel/bpf/arena.c; sleepable programs only before Linux 7.0) ----------- */
/* Allocate page_cnt zeroed pages (at addr when non-NULL); NULL on failure. flags must be 0. */
void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt, int node_id,
				    __u64 flags) __ksym __weak;
/* Free pages: they read back as zero from BPF and from user space. */
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym __weak;
/* Reserve pages (Linux 6.17+): allocation skips them, BPF accesses fault. 0 or -errno. */
int bpf_arena_reserve_pages(void *map, void __arena *addr, __u32 page_cnt) __ksym __weak;

#else /* user-space C: the BPF-only annotations vanish */

#define SEC(name)
#define __ksym
#ifndef __weak
#define __weak __attribute__((weak))
#endif
#define __arena
#define __arena_global
#define __arg_arena
#define cast_kern(ptr)
#define cast_user(ptr)
#define can_loop 1
#define cond_break
#define cond_break_label(label)
#define arena_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#endif /* __bpf__ */

#endif /* BPFARENA_H */
