// Types for the BTF reader (ebpfmaps tests: test_btf_types.py): read from the ELF file, never loaded.
// Between them they use every BTF kind clang emits: ints, floats, pointers, arrays, structs, unions,
// enums, forward declarations, typedefs, qualifiers, functions, variables, sections and both tags.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct opaque;

struct tagged {
	int hits __attribute__((btf_decl_tag("counter")));
	char __attribute__((btf_type_tag("user"))) *buf;
	double ratio;
	float half;
	const struct opaque *hidden;
	volatile int * restrict ptr;
	int matrix[2][3];
	unsigned long long big[0];
};

typedef struct tagged tagged_t;

__u64 counter_in_bss;
const volatile int ro_setting = 3;

static __attribute__((noinline)) int use_tagged(tagged_t *t)
{
	return t->hits + (t->buf != 0);
}

SEC("xdp")
int run(struct xdp_md *ctx)
{
	tagged_t t = {};

	t.hits = ro_setting;
	counter_in_bss++;
	return use_tagged(&t) ? XDP_PASS : XDP_DROP;
}
