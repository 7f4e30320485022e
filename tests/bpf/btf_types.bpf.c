// Maps whose keys and values use most of what BTF describes (ebpfmaps tests: test_btf_types.py).
// Python fills them; bpftool and ebpfmaps must read the same entries the same way.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum color { RED = 0, GREEN = 1, BLUE = 7, NEGATIVE = -3 };
enum big : unsigned long long { SMALL = 1, HUGE = 0xF000000000000000ULL };

typedef unsigned int pid_type;

struct point {
	int x;
	short y;
	signed char dx;
	unsigned char flags;
};

union number {
	__u64 u;
	__s32 s;
	unsigned char bytes[8];
};

struct task_key {
	pid_type pid;
	__u32 cpu;
};

struct record {
	char comm[16];
	enum color color;
	enum big big;
	struct point origin;
	struct point path[3];
	union number num;
	__s64 delta;
	__u8 raw[4];
	unsigned int kind : 3;
	int level : 5;
	unsigned int wide : 20;
	_Bool on;
	const volatile __u16 grid[2][3];
	char *where;
	struct {
		__u16 a;
		__u16 b;
	} pair;
	union {
		__u32 as_int;
		__u16 halves[2];
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct task_key);
	__type(value, struct record);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct point);
} points SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, enum color);
	__type(value, __s64);
} by_color SEC(".maps");

// Writes one record for the running task (through BPF_PROG_TEST_RUN): the kernel side fills a value too.
SEC("xdp")
int fill(struct xdp_md *ctx)
{
	struct task_key key = { .pid = 42, .cpu = 0 };
	struct record r = {};

	__builtin_memcpy(r.comm, "kernel", 7);
	r.color = BLUE;
	r.big = HUGE;
	r.origin.x = -5;
	r.origin.y = 300;
	r.path[2].dx = -1;
	r.num.s = -2;
	r.delta = -123456789;
	r.kind = 5;
	r.level = -9;
	r.wide = 0xABCDE;
	r.on = 1;
	r.pair.b = 9;
	r.as_int = 0x00020001;
	bpf_map_update_elem(&records, &key, &r, BPF_ANY);
	return XDP_PASS;
}
