// Drains a user ring buffer (Python produces) and echoes every record into an ordinary
// ring buffer (Python reads it back), for the UserRingBufWriter tests (ebpfmaps tests/bpf).
// Each record starts with a u32 giving its own total length (4..255 bytes).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_ECHO 256

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} urb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} echo_out SEC(".maps");

// [0] records drained, [1] records whose length field was wrong, [2] last drain's return value
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} echo_state SEC(".maps");

struct echo_ctx {
	__u64 bad;
};

static long echo_one(struct bpf_dynptr *dynptr, void *raw_ctx)
{
	struct echo_ctx *ec = raw_ctx;
	__u8 buf[MAX_ECHO] = {};
	__u32 len = 0;

	if (bpf_dynptr_read(&len, sizeof(len), dynptr, 0, 0)) {
		ec->bad++;
		return 0;
	}
	// A copy whose address is never taken stays in a register, so the verifier keeps its bound.
	__u32 n = len & (MAX_ECHO - 1);
	if (n < sizeof(__u32) || bpf_dynptr_read(buf, n, dynptr, 0, 0)) {
		ec->bad++;
		return 0;
	}
	bpf_ringbuf_output(&echo_out, buf, n, 0);
	return 0;
}

SEC("xdp")
int urb_echo(struct xdp_md *ctx)
{
	struct echo_ctx ec = {};
	__u32 k0 = 0, k1 = 1, k2 = 2;
	__u64 *drained = bpf_map_lookup_elem(&echo_state, &k0);
	__u64 *bad = bpf_map_lookup_elem(&echo_state, &k1);
	__u64 *last = bpf_map_lookup_elem(&echo_state, &k2);
	long n;

	if (!drained || !bad || !last)
		return XDP_ABORTED;
	n = bpf_user_ringbuf_drain(&urb, echo_one, &ec, 0);
	*last = (__u64)n;
	if (n > 0)
		__sync_fetch_and_add(drained, n);
	__sync_fetch_and_add(bad, ec.bad);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
