// Ring buffer producer for the reader tests and benchmark (ebpfmaps tests/bpf).
// Run through BPF_PROG_TEST_RUN on XDP: the first 16 bytes of the test packet are a
// struct rb_cfg telling the program what to produce, so one object covers every case.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_RECORD 512

struct rb_cfg {
	__u32 mode;   // 0 output, 1 reserve+submit, 2 reserve+discard, 3 odd seq discarded
	__u32 count;  // records per run (bpf_loop)
	__u32 size;   // record size for mode 0 (16..MAX_RECORD-1)
	__u32 flags;  // ringbuf flags (BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP)
};

// Every record starts with this header; the rest of a mode-0 record is zero.
struct rb_rec {
	__u64 seq;
	__u32 size;
	__u32 magic;
};

#define RB_MAGIC 0xeb9f0a11u

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} rb SEC(".maps");

// [0] next sequence number, [1] records the ring had no room for
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} rb_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[MAX_RECORD]);
} rb_scratch SEC(".maps");

struct loop_ctx {
	struct rb_cfg cfg;
	__u64 *seq;
	__u64 *drops;
};

static long produce_one(__u32 index, struct loop_ctx *lc)
{
	__u64 seq = __sync_fetch_and_add(lc->seq, 1);
	__u32 mode = lc->cfg.mode;

	if (mode == 0) {
		__u32 zero = 0;
		__u8 *buf = bpf_map_lookup_elem(&rb_scratch, &zero);
		__u32 size = lc->cfg.size;
		if (!buf)
			return 1;
		// A mask (not a comparison, which clang may fold away) bounds the size for the verifier.
		size &= MAX_RECORD - 1;
		if (size < sizeof(struct rb_rec))
			size = sizeof(struct rb_rec);
		struct rb_rec *hdr = (struct rb_rec *)buf;
		hdr->seq = seq;
		hdr->size = size;
		hdr->magic = RB_MAGIC;
		if (bpf_ringbuf_output(&rb, buf, size, lc->cfg.flags))
			__sync_fetch_and_add(lc->drops, 1);
		return 0;
	}
	struct rb_rec *r = bpf_ringbuf_reserve(&rb, 64, 0);
	if (!r) {
		__sync_fetch_and_add(lc->drops, 1);
		return 0;
	}
	r->seq = seq;
	r->size = 64;
	r->magic = RB_MAGIC;
	if (mode == 2 || (mode == 3 && (seq & 1)))
		bpf_ringbuf_discard(r, lc->cfg.flags);
	else
		bpf_ringbuf_submit(r, lc->cfg.flags);
	return 0;
}

SEC("xdp")
int rb_produce(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct loop_ctx lc = {};
	__u32 k0 = 0, k1 = 1;

	if (data + sizeof(struct rb_cfg) > end)
		return XDP_ABORTED;
	__builtin_memcpy(&lc.cfg, data, sizeof(struct rb_cfg));
	lc.seq = bpf_map_lookup_elem(&rb_state, &k0);
	lc.drops = bpf_map_lookup_elem(&rb_state, &k1);
	if (!lc.seq || !lc.drops)
		return XDP_ABORTED;
	bpf_loop(lc.cfg.count, produce_one, &lc, 0);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
