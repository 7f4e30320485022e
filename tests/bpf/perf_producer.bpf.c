// bpf_perf_event_output producer for the perf reader tests (ebpfmaps tests/bpf).
// XDP, run through BPF_PROG_TEST_RUN: the first 4 bytes of the packet give the record size;
// each run writes one record to the current CPU's perf ring.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_RECORD 256

struct perf_rec {
	__u64 seq;
	__u32 size;
	__u32 magic;
};

#define PERF_MAGIC 0x9e4f0b55u

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

// [0] next sequence number, [1] outputs the kernel refused (no event on this CPU, ...)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} perf_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[MAX_RECORD]);
} perf_scratch SEC(".maps");

SEC("xdp")
int perf_produce(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 k0 = 0, k1 = 1;
	__u64 *seq, *errs;
	__u8 *buf;
	__u32 size;

	if (data + sizeof(__u32) > end)
		return XDP_ABORTED;
	size = *(__u32 *)data & (MAX_RECORD - 1);
	if (size < sizeof(struct perf_rec))
		size = sizeof(struct perf_rec);
	seq = bpf_map_lookup_elem(&perf_state, &k0);
	errs = bpf_map_lookup_elem(&perf_state, &k1);
	buf = bpf_map_lookup_elem(&perf_scratch, &k0);
	if (!seq || !errs || !buf)
		return XDP_ABORTED;
	struct perf_rec *r = (struct perf_rec *)buf;
	// One producer runs at a time (BPF_PROG_TEST_RUN from one thread): a plain increment numbers the
	// records, and needs no atomic fetch-add, which kernels before 5.12 do not have.
	r->seq = *seq;
	*seq += 1;
	r->size = size;
	r->magic = PERF_MAGIC;
	if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, buf, size))
		__sync_fetch_and_add(errs, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
