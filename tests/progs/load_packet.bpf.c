/* Packet programs run with data_in: they see the packet's length and first byte. */
#include <bpfarena.h>

char _license[] SEC("license") = "GPL";

struct __sk_buff {
	__u32 len;
} __attribute__((preserve_access_index));

SEC("tc")
int pkt_len(struct __sk_buff *skb)
{
	return skb->len;
}
