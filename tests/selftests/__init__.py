"""The kernel's own BPF map selftests (tools/testing/selftests/bpf), ported to the ebpfmaps API."""
