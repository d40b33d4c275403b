/* Packet programs as clang builds them: an XDP load balancer step (parse Ethernet/IPv4/UDP with bounds
 * checks, count per protocol, swap MACs and bounce UDP port 53 with XDP_TX, redirect port 80 through a
 * devmap, pass the rest) and a tc classifier that rewrites the IPv4 destination with the checksum helpers
 * (the cilium pattern: bpf_csum_diff + l3/l4 csum replace) and marks the packet. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 key;
	__u64 *hits;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	key = ip->protocol;
	hits = bpf_map_lookup_elem(&proto_hits, &key);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;
	if (udp->dest == bpf_htons(53)) {
		unsigned char tmp[ETH_ALEN];
		__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
		return XDP_TX;
	}
	if (udp->dest == bpf_htons(80))
		return bpf_redirect_map(&tx_ports, 1, XDP_PASS);
	return XDP_PASS;
}

#define IP_DST_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define TCP_CSUM_OFF (ETH_HLEN + sizeof(struct iphdr) + __builtin_offsetof(struct tcphdr, check))

SEC("tc")
int tc_dnat(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__be32 old, new = bpf_htonl(0xc0a80163);	/* 192.168.1.99 */
	__s64 diff;

	if ((void *)(ip + 1) > data_end || skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (ip->protocol != IPPROTO_TCP || ip->ihl != 5)
		return TC_ACT_OK;
	old = ip->daddr;
	diff = bpf_csum_diff(&old, 4, &new, 4, 0);
	if (bpf_skb_store_bytes(skb, IP_DST_OFF, &new, 4, 0))
		return TC_ACT_SHOT;
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, diff, 0);
	bpf_l4_csum_replace(skb, TCP_CSUM_OFF, old, new, BPF_F_PSEUDO_HDR | 4);
	skb->mark = 0x42;
	return skb->mark == 0x42 ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
