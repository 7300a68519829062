/* Acceptance audit: -mcpu=v4 instructions on arena memory (sign-extending loads, sdiv/smod,
 * bswap, movsx), compiled with cpu="v4". */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 4, 0);

signed char __arena_global s8v = -5;
short __arena_global s16v = -300;
int __arena_global s32v = -70000;
__s64 __arena_global num = -17;
__s64 __arena_global den = 5;
__u64 __arena_global word = 0x0102030405060708ULL;
__s64 out[12];

SEC("syscall")
int v4ops(void *ctx)
{
	volatile signed char __arena *pc = &s8v;
	volatile short __arena *ps = &s16v;
	volatile int __arena *pi = &s32v;
	signed char __arena *unalloc = (signed char __arena *)((__u64)&s8v + 3 * 4096);
	__s64 n = num, d = den;
	__u64 w = word;

	out[0] = *pc;				/* ldsx 8 */
	out[1] = *ps;				/* ldsx 16 */
	out[2] = *pi;				/* ldsx 32 */
	out[3] = n / d;				/* sdiv: -3 */
	out[4] = n % d;				/* smod: -2 */
	out[5] = (int)n / (int)d;		/* sdiv32 */
	out[6] = (int)n % (int)d;		/* smod32 */
	out[7] = __builtin_bswap64(w);
	out[8] = __builtin_bswap32((__u32)w);
	out[9] = (__s64)(signed char)(w + 0x78);	/* movsx */
	out[10] = *(volatile signed char __arena *)unalloc;	/* faulting ldsx gives 0 */
	out[11] = n / (d - 5);			/* division by zero: 0 */
	return (int)out[0];
}
