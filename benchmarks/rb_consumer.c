// C baseline for benchmarks/bench_ringbuf.py: libbpf's own ring buffer consumer
// (ring_buffer__new / ring_buffer__consume) on a ring buffer map fd inherited from Python.
// Commands on stdin, one per line: "consume" drains what is there and answers
// "ok <ns> <records>" (timed here, so the pipe is not counted); "quit" ends.
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rec { uint64_t seq; uint32_t size; uint32_t magic; uint8_t rest[48]; };

static uint64_t checksum;

// "Decoding" as the Python side does: copy the record out of the ring into a struct.
static int on_sample(void *ctx, void *data, size_t len)
{
	struct rec r;
	if (len < sizeof(r))
		return 0;
	memcpy(&r, data, sizeof(r));
	checksum += r.seq + r.rest[0];
	return 0;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char line[128];
	if (argc != 2) {
		fprintf(stderr, "usage: %s RINGBUF_MAP_FD\n", argv[0]);
		return 2;
	}
	struct ring_buffer *rb = ring_buffer__new(atoi(argv[1]), on_sample, NULL, NULL);
	if (!rb) {
		printf("error ring_buffer__new failed\n");
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "quit", 4))
			break;
		int64_t t0 = now_ns();
		int n = ring_buffer__consume(rb);
		int64_t t1 = now_ns();
		if (n < 0)
			printf("error %d\n", n);
		else
			printf("ok %lld %d\n", (long long)(t1 - t0), n);
		fflush(stdout);
	}
	ring_buffer__free(rb);
	fprintf(stderr, "checksum %llu\n", (unsigned long long)checksum);
	return 0;
}
