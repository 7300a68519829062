/* Acceptance audit: ALU corner cases as the kernel defines them (shift counts past the width,
 * division and modulo by zero, signed overflow), with operands the verifier cannot see. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

__u64 in[4] = {0x8000000000000001ULL, 65, 0, 0xffffffffffffffffULL};
__u64 out[24];

#define OP(i, insn)                                                                        \
	do {                                                                               \
		__u64 a = in[0], b = in[1], z = in[2], m = in[3];                          \
		asm volatile(insn : "+r"(a) : "r"(b), "r"(z), "r"(m));                     \
		out[i] = a;                                                                \
	} while (0)

SEC("syscall")
int alu(void *ctx)
{
	OP(0, "%0 <<= %1");
	OP(1, "%0 >>= %1");
	OP(2, "%0 s>>= %1");
	OP(3, "%0 = %0");
	OP(4, "%0 /= %2");		/* div by zero: 0 */
	OP(5, "%0 %%= %2");		/* mod by zero: dst unchanged */
	OP(6, "%0 s/= %2");
	OP(7, "%0 s%%= %2");
	OP(8, "%0 s/= %3");		/* INT64_MIN+1 / -1 */
	OP(9, "%0 s%%= %3");
	OP(10, "%0 = -%0");
	OP(11, "%0 = bswap16 %0");
	OP(12, "%0 = be32 %0");
	OP(13, "%0 = le16 %0");
	OP(14, "%0 = (s16)%0");
	OP(15, "%0 += %3");
	return 0;
}

#define OP32(i, insn)                                                                      \
	do {                                                                               \
		__u32 a = in[0], b = in[1], z = in[2], m = in[3];                          \
		asm volatile(insn : "+w"(a) : "w"(b), "w"(z), "w"(m));                     \
		out[16 + i] = a;                                                           \
	} while (0)

SEC("syscall")
int alu32(void *ctx)
{
	OP32(0, "%0 <<= %1");
	OP32(1, "%0 >>= %1");
	OP32(2, "%0 s>>= %1");
	OP32(3, "%0 /= %2");
	OP32(4, "%0 %%= %2");		/* mod by zero (32-bit): upper half cleared */
	OP32(5, "%0 s/= %3");
	OP32(6, "%0 s%%= %3");
	OP32(7, "%0 = -%0");
	return 0;
}
