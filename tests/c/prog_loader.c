// A plain libbpf loader for the sharing tests: opens a BPF object with pin_root_path (so maps declared
// LIBBPF_PIN_BY_NAME are pinned there, or reused when already pinned), loads it, runs one XDP program
// through BPF_PROG_TEST_RUN and prints what it then reads from the pinned map.
//
//   prog_loader OBJECT PIN_ROOT PROGRAM MAP FIRST_BYTE REPEAT
//
// Output: "count <value of MAP[FIRST_BYTE]>" on success; non-zero exit with a message otherwise.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s OBJECT PIN_ROOT PROGRAM MAP FIRST_BYTE REPEAT\n", argv[0]);
		return 2;
	}
	LIBBPF_OPTS(bpf_object_open_opts, open_opts, .pin_root_path = argv[2]);
	struct bpf_object *obj = bpf_object__open_file(argv[1], &open_opts);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load: %s\n", strerror(-err));
		return 1;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, argv[3]);
	struct bpf_map *map = bpf_object__find_map_by_name(obj, argv[4]);
	if (!prog || !map) {
		fprintf(stderr, "no program %s or map %s\n", argv[3], argv[4]);
		return 1;
	}
	unsigned char packet[64];
	memset(packet, atoi(argv[5]), sizeof(packet));
	LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = packet, .data_size_in = sizeof(packet),
		    .repeat = atoi(argv[6]));
	err = bpf_prog_test_run_opts(bpf_program__fd(prog), &run);
	if (err) {
		fprintf(stderr, "test_run: %s\n", strerror(-err));
		return 1;
	}
	__u32 key = (__u32)atoi(argv[5]);
	__u64 value = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &key, &value)) {
		fprintf(stderr, "lookup: %s\n", strerror(errno));
		return 1;
	}
	printf("count %llu\n", (unsigned long long)value);
	bpf_object__close(obj);
	return 0;
}
