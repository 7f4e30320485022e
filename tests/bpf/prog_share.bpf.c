// Programs that share maps with Python (ebpfmaps tests: test_programs_objects.py, test_sharing.py).
// Each runs through BPF_PROG_TEST_RUN on XDP, so no traffic is needed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

// Python writes slot 0; `double_it` doubles it; `bump` adds 1 atomically to slot 1.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared SEC(".maps");

// Pinned by name under the object's pin_root_path: reused when ebpfmaps pinned it first.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_counts SEC(".maps");

SEC("xdp")
int double_it(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&shared, &key);
	if (!v)
		return XDP_ABORTED;
	*v = *v * 2;
	return XDP_PASS;
}

SEC("xdp")
int bump(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&shared, &key);
	if (!v)
		return XDP_ABORTED;
	__sync_fetch_and_add(v, 1);
	return XDP_PASS;
}

// Counts packets by their first byte in pinned_counts.
SEC("xdp")
int count_first_byte(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + 1 > end)
		return XDP_DROP;
	__u32 key = *(__u8 *)data;
	__u64 one = 1, *v = bpf_map_lookup_elem(&pinned_counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&pinned_counts, &key, &one, BPF_NOEXIST);
	return XDP_PASS;
}
