// A legacy object as bcc/iproute2-era code wrote it: maps are struct bpf_map_def in SEC("maps"), which
// libbpf 1.x refuses (ebpfmaps tests: test_legacy_objects.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// libbpf dropped this struct in 1.0; old objects declared it themselves or took it from libbpf 0.x.
struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") packets = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 4,
};

struct bpf_map_def SEC("maps") by_length = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
	.map_flags = BPF_F_NO_PREALLOC,
};

struct bpf_map_def SEC("maps") getppid_calls = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 1,
};

char _license[] SEC("license") = "GPL";

// Counts packets in packets[0] and, per packet length, in by_length.
SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u32 len = ctx->data_end - ctx->data;
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&packets, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	v = bpf_map_lookup_elem(&by_length, &len);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&by_length, &len, &one, BPF_NOEXIST);
	return XDP_PASS;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&getppid_calls, &key);

	if (v)
		*v += 1;
	return 0;
}
