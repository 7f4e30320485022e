// Programs whose ELF sections say where they attach (ebpfmaps tests: test_attach_objects.py).
// Each adds 1 to its own slot of `counts` when the current process is the one Python wrote into `config`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

// Slot 0: the tgid the tracing programs count.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} config SEC(".maps");

enum { SLOT_TP, SLOT_KPROBE, SLOT_CGROUP, SLOT_TC, SLOT_UPROBE, SLOT_SOCKET };

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int ours(void)
{
	__u32 key = 0;
	__u64 *tgid = bpf_map_lookup_elem(&config, &key);
	return tgid && *tgid == (bpf_get_current_pid_tgid() >> 32);
}

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if (ours())
		bump(SLOT_TP);
	return 0;
}

SEC("kprobe/do_sys_openat2")
int on_open(void *ctx)
{
	if (ours())
		bump(SLOT_KPROBE);
	return 0;
}

SEC("cgroup_skb/egress")
int on_egress(struct __sk_buff *skb)
{
	bump(SLOT_CGROUP);
	return 1;
}

SEC("tc")
int on_tc(struct __sk_buff *skb)
{
	if (skb->protocol == __builtin_bswap16(0x88B5))
		bump(SLOT_TC);
	return 0;
}

SEC("uprobe")
int on_uprobe(void *ctx)
{
	if (ours())
		bump(SLOT_UPROBE);
	return 0;
}

SEC("socket")
int on_socket(struct __sk_buff *skb)
{
	bump(SLOT_SOCKET);
	return skb->len;
}
