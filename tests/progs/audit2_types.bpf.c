/* Audit 2: arena memory from non-sleepable program types run by BPF_PROG_TEST_RUN (tc with a
 * packet, socket filter, raw_tp), on pages Python allocated (no kfuncs here). */
#include <linux/bpf.h>
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

BPFARENA_MAP(arena, 32, 0);

struct stats {
	__u64 packets;
	__u64 bytes;
	__u64 hist[16];
	__u32 first_word;
	__s32 last_len;
};

struct stats __arena *stats_ptr; /* .bss: a page Python allocated */
__u64 __arena *ring;              /* .bss: another Python page */
__u64 __arena_global tp_calls;
__u32 ring_head;

SEC("tc")
int tc_hist(struct __sk_buff *skb)
{
	struct stats __arena *s = stats_ptr;
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	int i;

	bpfarena_use_map(arena); /* it reaches the arena only through a .bss pointer */
	if (!s)
		return 2;
	s->packets++;
	s->bytes += skb->len;
	if (data + 4 <= end)
		s->first_word = *(__u32 *)data;
	for (i = 0; i < 64; i++) {
		if (data + i + 1 > end)
			break;
		s->hist[data[i] & 15]++;
	}
	s->last_len = -(int)skb->len;
	return 1;
}

SEC("socket")
int sock_keep(struct __sk_buff *skb)
{
	__u64 __arena *r = ring;
	__u32 h = ring_head;

	bpfarena_use_map(arena);
	if (!r)
		return 0;
	r[h & 63] = ((__u64)skb->len << 32) | skb->protocol;
	ring_head = h + 1;
	return skb->len > 40 ? 40 : skb->len;
}

SEC("raw_tp")
int tp_count(void *ctx)
{
	struct stats __arena *s = stats_ptr;

	tp_calls++;
	if (s) /* a value Python wrote, read back and changed */
		return s->first_word ^ 0xffff;
	return 0;
}

SEC("xdp")
int xdp_first(struct xdp_md *x)
{
	struct stats __arena *s = stats_ptr;
	__u8 *data = (__u8 *)(long)x->data;
	__u8 *end = (__u8 *)(long)x->data_end;

	bpfarena_use_map(arena);
	if (!s)
		return 0;
	if (data + 4 > end)
		return 1;
	s->first_word = *(__u32 *)data;
	*(__u32 *)data = 0xdeadbeef; /* into the packet: data_out shows it */
	return 2; /* XDP_PASS */
}
