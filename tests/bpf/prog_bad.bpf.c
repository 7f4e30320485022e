// A program the verifier must refuse (ebpfmaps tests: the libbpf report reaches the exception).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int reads_past_the_packet(struct xdp_md *ctx)
{
	// No check against data_end: the verifier rejects the load.
	unsigned char *data = (unsigned char *)(long)ctx->data;
	return data[0] == 1 ? XDP_DROP : XDP_PASS;
}
