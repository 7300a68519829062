/* Audit 2: string search over const __arena strings, an arena spin lock, subprograms, bpf_loop
 * callbacks, 32-bit ALU on arena pointers, signed division, byte swaps and atomics on arena memory.
 * Built for -mcpu=v3 and v4 (v4: sign-extending arena loads, sdiv/smod, bswap). */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 64, 0);

/* ---- strings ---- */
const char __arena_global hay[] = "the quick brown fox jumps over the lazy dog";
const char __arena_global pat_fox[] = "f?x";
const char __arena_global pat_star[] = "*lazy*";
const char __arena_global pat_no[] = "*cat*";
const signed char __arena_global sbytes[8] = {-1, -128, 127, 5, -6, 0, 1, -2};
char __arena_global sdst[64];

__s64 str_out[8];

/* glob match: '?' any char, '*' any run; iterative with one backtrack point */
static __noinline int glob_match(const char __arena *pat __arg_arena, const char __arena *str __arg_arena)
{
	const char __arena *back_pat = NULL, *back_str = NULL;

	while (can_loop) {
		char c = *str++;
		char d = *pat++;

		if (d == '*') {
			if (*pat == 0)
				return 1;
			back_pat = pat;
			back_str = --str;
			continue;
		}
		if (c == d || (d == '?' && c)) {
			if (c == 0)
				return 1;
			continue;
		}
		if (!c || !back_pat)
			return 0;
		str = ++back_str;
		pat = back_pat;
	}
	return -1;
}

static __noinline int find_sub(const char __arena *s __arg_arena, char c1, char c2)
{
	int i;

	for (i = 0; s[i] && can_loop; i++)
		if (s[i] == c1 && s[i + 1] == c2)
			return i;
	return -1;
}

SEC("syscall")
int strsearch(void *ctx)
{
	__s64 sum = 0;
	int i;

	bpfarena_use_map(arena);
	str_out[0] = glob_match(pat_fox, hay + 16);
	str_out[1] = glob_match(pat_star, hay);
	str_out[2] = glob_match(pat_no, hay);
	str_out[3] = find_sub(hay, 'o', 'g');
	for (i = 0; i < 8; i++)
		sum = sum * 3 + sbytes[i]; /* sign-extending loads */
	str_out[4] = sum;
	/* copy with case change, into the arena */
	for (i = 0; i < 63 && hay[i] && can_loop; i++) {
		char c = hay[i];

		sdst[i] = (c >= 'a' && c <= 'z') ? c - 32 : c;
	}
	str_out[5] = i;
	return str_out[0] + str_out[1] * 2 + str_out[2] * 4;
}

/* ---- a spin lock on arena atomics ---- */
__u32 __arena_global lock_word;
__u64 __arena_global counter;
__u64 __arena_global contended;
__u32 reps = 1000;

static __always_inline int arena_lock(__u32 __arena *l)
{
	while (can_loop) {
		if (__sync_val_compare_and_swap(l, 0, 1) == 0)
			return 0;
		__sync_fetch_and_add(&contended, 1);
	}
	return -1;
}

static __always_inline void arena_unlock(__u32 __arena *l)
{
	__sync_lock_test_and_set(l, 0); /* xchg */
}

SEC("syscall")
int spin(void *ctx)
{
	__u32 i;

	for (i = 0; i < reps && can_loop; i++) {
		if (arena_lock(&lock_word))
			return -1;
		counter++;
		arena_unlock(&lock_word);
	}
	return lock_word;
}

/* a lock held by "someone else": the loop gives up when may_goto's budget runs out (timed on
 * x86-64 since 6.15: ~0.25 s, then retval 0; the VM follows the same rule). */
SEC("syscall")
int spin_held(void *ctx)
{
	lock_word = 7;
	if (arena_lock(&lock_word) == 0)
		return 1;
	lock_word = 0;
	return 0;
}

/* ---- subprograms and bpf_loop ---- */
struct acc {
	__u64 sum;
	__u64 xor;
	__u32 calls;
	__u32 pad;
	__u64 vals[32];
};

struct acc __arena_global acc;

__noinline int global_add(struct acc __arena *a __arg_arena, __u64 v)
{
	if (!a)
		return -1;
	a->sum += v;
	a->xor ^= v * 0x9e3779b97f4a7c15ULL;
	a->calls++;
	return a->calls;
}

static __noinline __u64 mix(__u64 a, __u64 b, __u64 c, __u64 d, __u64 e)
{
	return (a * 31 + b) ^ (c << 7) ^ (d >> 3) ^ (e * e);
}

static int loop_cb(__u64 idx, void *ctx)
{
	struct acc __arena *a = &acc;

	a->vals[idx & 31] = mix(idx, idx + 1, idx + 2, idx + 3, idx + 4);
	global_add(a, idx);
	return idx == 40 ? 1 : 0; /* stop after 41 calls */
}

__s64 sub_out[4];

SEC("syscall")
int subprogs(void *ctx)
{
	long n = bpf_loop(100, loop_cb, NULL, 0);

	sub_out[0] = n;
	sub_out[1] = global_add(&acc, 1000);
	sub_out[2] = global_add(NULL, 1);
	return acc.calls;
}

/* stack-heavy: a 400-byte local buffer filled and reduced, results to the arena */
__u64 __arena_global stack_res[4];

static __noinline __u64 stack_user(__u32 seed)
{
	__u64 buf[50];
	__u64 s = 0;
	int i;

	buf[0] = seed;
	for (i = 1; i < 50; i++)
		buf[i] = (__u64)seed * (i + 1) ^ (buf[i - 1] & 0xff);
	for (i = 49; i >= 0; i--)
		s = s * 3 + buf[i];
	return s;
}

SEC("syscall")
int stack_heavy(void *ctx)
{
	stack_res[0] = stack_user(1);
	stack_res[1] = stack_user(0xdeadbeef);
	return 0;
}

/* ---- ALU: 32-bit ops on arena pointers, signed division, byte swaps ---- */
__u64 __arena_global alu_mem[16];
__s64 alu_out[16];
volatile __s64 sa = -7, sb = 2, sc = -2;
volatile __u64 ua = 0x0102030405060708ULL;

SEC("syscall")
int alu(void *ctx)
{
	char __arena *p = (char __arena *)&alu_mem[0];
	__u32 lo = (__u32)(__u64)p;
	char __arena *q;

	/* 32-bit arithmetic on the pointer value, then back to a pointer */
	lo += 8 * 3;
	q = (char __arena *)(((__u64)p & ~0xffffffffULL) | lo);
	*(__u64 __arena *)q = 0xabc;
	alu_out[0] = alu_mem[3];
	alu_out[1] = (__u64)q - (__u64)p;
#if defined(__BPF_CPU_VERSION__) && __BPF_CPU_VERSION__ >= 4
	alu_out[2] = sa / sb;
	alu_out[3] = sa % sb;
	alu_out[4] = sa / sc;
	alu_out[5] = sa % sc;
	alu_out[6] = (__s32)sa / (__s32)sb;
#else
	alu_out[2] = (__u64)sa / (__u64)sb;
	alu_out[3] = (__u64)sa % (__u64)sb;
	alu_out[4] = (__u64)sa / (__u64)sc;
	alu_out[5] = (__u64)sa % (__u64)sc;
	alu_out[6] = (__u32)sa / (__u32)sb;
#endif
	alu_out[7] = __builtin_bswap64(ua);
	alu_out[8] = __builtin_bswap32((__u32)ua);
	alu_out[9] = __builtin_bswap16((__u16)ua);
	alu_out[10] = (__s8)ua + (__s16)(ua >> 8) + (__s32)(ua >> 16);
	alu_mem[4] = __builtin_bswap64(alu_mem[3]);
	alu_mem[5] = (__u64)(__s64)(__s32)(__u32)alu_mem[4]; /* movsx from arena */
	return 0;
}

/* ---- atomics on arena memory, 4 and 8 bytes (x86 JIT: add/and/or/xor, fetch_add, xchg,
 * cmpxchg) ---- */
__u64 __arena_global a64[8] = {10, 0xff00, 0xf0, 0x0f, 5, 1, 100, 0};
__u32 __arena_global a32[8] = {10, 0xff00, 0xf0, 0x0f, 5, 1, 100, 0};
__u64 at_out[16];

SEC("syscall")
int atomics(void *ctx)
{
	__sync_fetch_and_add(&a64[0], 5);
	__sync_fetch_and_and(&a64[1], 0x0ff0);
	__sync_fetch_and_or(&a64[2], 0x0f);
	__sync_fetch_and_xor(&a64[3], 0xff);
	at_out[0] = __sync_fetch_and_add(&a64[6], -1);
	at_out[1] = __sync_lock_test_and_set(&a64[4], 77);
	at_out[2] = __sync_val_compare_and_swap(&a64[5], 1, 2);
	at_out[3] = __sync_val_compare_and_swap(&a64[5], 1, 3);
	at_out[4] = __atomic_fetch_add(&a64[7], 3, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a64[7], 4, __ATOMIC_SEQ_CST);

	__sync_fetch_and_add(&a32[0], 5);
	__sync_fetch_and_and(&a32[1], 0x0ff0);
	__sync_fetch_and_or(&a32[2], 0x0f);
	__sync_fetch_and_xor(&a32[3], 0xff);
	at_out[5] = __sync_fetch_and_add(&a32[6], -1);
	at_out[6] = __sync_lock_test_and_set(&a32[4], 77);
	at_out[7] = __sync_val_compare_and_swap(&a32[5], 1, 2);
	at_out[8] = __sync_val_compare_and_swap(&a32[5], 1, 3);
	at_out[9] = __atomic_exchange_n(&a32[7], 9, __ATOMIC_SEQ_CST);
	return 0;
}

/* ---- arena pointer arithmetic the verifier makes 32-bit ---- */
__u64 __arena_global pa_mem[8] = {11, 22, 33, 44, 55, 66, 77, 88};
__u64 pa_out[8];
volatile __u64 far = 1ULL << 32;
volatile __s64 back = -8;

SEC("syscall")
int ptr_arith(void *ctx)
{
	__u64 __arena *p = &pa_mem[2];
	__u64 __arena *q = (__u64 __arena *)((char __arena *)p + far); /* same low 32 bits */
	__u64 __arena *r = (__u64 __arena *)((char __arena *)p + back);
	__u64 __arena *__arena *slot = (__u64 __arena *__arena *)&pa_mem[7];

	pa_out[0] = *q;
	pa_out[1] = *r;
	pa_out[2] = (__u64)q - (__u64)p;
	pa_out[3] = q > p;
	*slot = r; /* a pointer stored in the arena: user form */
	pa_out[4] = **slot;
	pa_out[5] = (__u64)*slot == (__u64)r;
	return 0;
}
