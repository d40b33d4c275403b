/* Packet programs in the style of xdp-tutorial / katran / cilium parsers, compiled by clang for the verifier
 * tests (tests/test_verifier_packet.py): each section's instructions are committed as <section>.bin
 * (make -C tests/verifier/c). No maps, so the raw instructions need no relocation. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Ethernet (up to two VLAN tags), IPv4 with options or IPv6, TCP or UDP: drop TCP port 80, pass the rest. */
SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u16 proto;
	__u8 l4;
	void *l4h;

	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	proto = eth->h_proto;
	data = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = data;
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return XDP_DROP;
		proto = vh->proto;
		data = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;
		if ((void *)(ip + 1) > data_end)
			return XDP_DROP;
		if (ip->ihl < 5)
			return XDP_DROP;
		l4 = ip->protocol;
		l4h = data + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;
		if ((void *)(ip6 + 1) > data_end)
			return XDP_DROP;
		l4 = ip6->nexthdr;
		l4h = ip6 + 1;
	} else {
		return XDP_PASS;
	}
	if (l4 == IPPROTO_TCP) {
		struct tcphdr *tcp = l4h;
		if ((void *)(tcp + 1) > data_end)
			return XDP_DROP;
		if (tcp->dest == bpf_htons(80))
			return XDP_DROP;
	} else if (l4 == IPPROTO_UDP) {
		struct udphdr *udp = l4h;
		if ((void *)(udp + 1) > data_end)
			return XDP_DROP;
		if (udp->dest == bpf_htons(53))
			return XDP_TX;
	}
	return XDP_PASS;
}

/* tc: swap the Ethernet addresses in place, count bytes of the first 64 (a bounded loop), mark the skb. */
SEC("tc")
int tc_swap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];
	__u32 sum = 0;

	if ((void *)(eth + 1) > data_end)
		return 2;	/* TC_ACT_SHOT */
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	for (int i = 0; i < 64; i++) {
		unsigned char *p = data + i;
		if ((void *)(p + 1) > data_end)
			break;
		sum += *p;
	}
	skb->mark = sum;
	return 0;	/* TC_ACT_OK */
}

/* XDP metadata: reserve nothing, but read 4 bytes of metadata when the driver put them before the packet. */
SEC("xdp.meta")
int xdp_meta(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;
	__u32 *m = meta;

	if ((void *)(m + 1) > data)
		return XDP_PASS;
	return *m == 7 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

/* Refused: the check covers 13 bytes, the read of h_proto needs 14. */
SEC("xdp.short")
int xdp_short(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (data + 13 > data_end)
		return XDP_DROP;
	return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
}
