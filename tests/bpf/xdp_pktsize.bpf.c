// XDP packet counter and packet-size log2 histogram (ebpfmaps tests/bpf; also the packet histogram lab).
// Counts IPv4 UDP packets to the port in xdp_cfg[0] (0: every frame), and always passes them on.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define HIST_SLOTS 32

// [0] frames seen, [1] frames counted (matched), [2] bytes counted
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} xdp_counts SEC(".maps");

// slot k counts frames of length in [2^k, 2^(k+1))
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HIST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} xdp_hist SEC(".maps");

// [0] UDP destination port to count (host order), 0 for every frame
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xdp_cfg SEC(".maps");

static __always_inline __u32 log2_u32(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline void bump(void *map, __u32 key, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);
	if (v)
		__sync_fetch_and_add(v, by);
}

SEC("xdp")
int xdp_pktsize(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 len = end - data;
	__u32 zero = 0;
	__u32 *port = bpf_map_lookup_elem(&xdp_cfg, &zero);

	bump(&xdp_counts, 0, 1);
	if (port && *port) {
		struct ethhdr *eth = data;
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		struct udphdr *udp = (void *)ip + ip->ihl * 4;
		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(*port))
			return XDP_PASS;
	}
	bump(&xdp_counts, 1, 1);
	bump(&xdp_counts, 2, len);
	__u32 slot = log2_u32(len);
	if (slot >= HIST_SLOTS)
		slot = HIST_SLOTS - 1;
	bump(&xdp_hist, slot, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
