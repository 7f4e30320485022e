/*
 * C baseline for the ebpfmaps benchmarks: the same map operations through the same
 * system libbpf, timed in C, on the very map the Python side uses.
 *
 * It runs as a long-lived child of benchmarks/run.py (the map fds are inherited) and
 * reads one command per line on stdin, answering one line on stdout, so that the
 * runner can interleave C and Python rounds on the same CPU without paying a process
 * start per round. Every answer is "ok <total_ns> <elements>" or "error <text>".
 *
 * Commands (FD is an inherited map fd, KS/VS its key and value size):
 *   lookup FD KS VS N NKEYS         N lookups of u32 keys i % NKEYS (keys zero-padded to KS)
 *   update FD KS VS N NKEYS         N updates (BPF_ANY) of the same keys, value = key index
 *   delete FD KS VS N NKEYS         N deletes of keys 0..N-1 (N <= NKEYS, all present beforehand)
 *   lookup_batch FD KS VS BATCH     a whole-map walk with bpf_map_lookup_batch, BATCH per call
 *   update_batch FD KS VS NKEYS     one bpf_map_update_batch of keys 0..NKEYS-1
 *   next_key FD KS VS               a whole-map walk with get_next_key + lookup_elem
 *   getppid N                       N getppid() syscalls: the cost of a trivial syscall from C
 *   quit
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Keys are little u32 indices written into a KS-byte buffer, like the Python side's keys. */
static void put_key(unsigned char *dst, unsigned ks, uint32_t idx)
{
	memset(dst, 0, ks);
	memcpy(dst, &idx, ks < sizeof(idx) ? ks : sizeof(idx));
}

enum elem_op { OP_LOOKUP, OP_UPDATE, OP_DELETE };

static int cmd_lookup(int fd, unsigned ks, unsigned vs, unsigned long n, unsigned nkeys, enum elem_op op)
{
	unsigned char *keys = calloc(nkeys, ks);
	unsigned char *vals = calloc(nkeys, vs);
	unsigned char *out = calloc(1, vs);
	uint64_t t0, t1;
	unsigned long i;
	unsigned j = 0;

	if (!keys || !vals || !out)
		return printf("error out of memory\n"), 1;
	/* Keys and values are prepared before the clock starts, as the Python side prepares its lists. */
	for (i = 0; i < nkeys; i++) {
		put_key(keys + i * ks, ks, (uint32_t)i);
		put_key(vals + i * vs, vs, (uint32_t)i);
	}
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		int err = op == OP_UPDATE ? bpf_map_update_elem(fd, keys + (size_t)j * ks, vals + (size_t)j * vs, BPF_ANY)
			: op == OP_DELETE ? bpf_map_delete_elem(fd, keys + (size_t)j * ks)
			: bpf_map_lookup_elem(fd, keys + (size_t)j * ks, out);
		if (err) {
			printf("error %s: %s\n", op == OP_UPDATE ? "update" : op == OP_DELETE ? "delete" : "lookup",
			       strerror(-err));
			goto done;
		}
		if (++j == nkeys)
			j = 0;
	}
	t1 = now_ns();
	printf("ok %llu %lu\n", (unsigned long long)(t1 - t0), n);
done:
	free(keys);
	free(vals);
	free(out);
	return 0;
}

static int cmd_lookup_batch(int fd, unsigned ks, unsigned vs, unsigned batch)
{
	/* The cursor must hold a key (hash maps) or a u32 index (arrays); 8 bytes covers both for small keys. */
	unsigned csize = ks > 8 ? ks : 8;
	unsigned char *cin = calloc(1, csize), *cout = calloc(1, csize);
	unsigned char *keys = malloc((size_t)ks * batch), *vals = malloc((size_t)vs * batch);
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	unsigned long total = 0;
	uint64_t t0, t1;
	int first = 1;

	if (!cin || !cout || !keys || !vals)
		return printf("error out of memory\n"), 1;
	t0 = now_ns();
	for (;;) {
		__u32 count = batch;
		int err = bpf_map_lookup_batch(fd, first ? NULL : cin, cout, keys, vals, &count, &opts);

		total += count;
		if (err == -ENOENT)
			break;
		if (err) {
			printf("error lookup_batch: %s\n", strerror(-err));
			goto done;
		}
		memcpy(cin, cout, csize);
		first = 0;
	}
	t1 = now_ns();
	printf("ok %llu %lu\n", (unsigned long long)(t1 - t0), total);
done:
	free(cin);
	free(cout);
	free(keys);
	free(vals);
	return 0;
}

static int cmd_update_batch(int fd, unsigned ks, unsigned vs, unsigned nkeys)
{
	unsigned char *keys = calloc(nkeys, ks), *vals = calloc(nkeys, vs);
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
	__u32 count = nkeys;
	uint64_t t0, t1;
	unsigned i;
	int err;

	if (!keys || !vals)
		return printf("error out of memory\n"), 1;
	for (i = 0; i < nkeys; i++) {
		put_key(keys + (size_t)i * ks, ks, i);
		put_key(vals + (size_t)i * vs, vs, i);
	}
	t0 = now_ns();
	err = bpf_map_update_batch(fd, keys, vals, &count, &opts);
	t1 = now_ns();
	if (err)
		printf("error update_batch: %s (after %u)\n", strerror(-err), count);
	else
		printf("ok %llu %u\n", (unsigned long long)(t1 - t0), count);
	free(keys);
	free(vals);
	return 0;
}

static int cmd_next_key(int fd, unsigned ks, unsigned vs)
{
	unsigned char *cur = calloc(1, ks), *next = calloc(1, ks), *val = calloc(1, vs);
	unsigned long total = 0;
	uint64_t t0, t1;
	int first = 1;

	if (!cur || !next || !val)
		return printf("error out of memory\n"), 1;
	t0 = now_ns();
	while (bpf_map_get_next_key(fd, first ? NULL : cur, next) == 0) {
		if (bpf_map_lookup_elem(fd, next, val) == 0)
			total++;
		memcpy(cur, next, ks);
		first = 0;
	}
	t1 = now_ns();
	printf("ok %llu %lu\n", (unsigned long long)(t1 - t0), total);
	free(cur);
	free(next);
	free(val);
	return 0;
}

static int cmd_getppid(unsigned long n)
{
	uint64_t t0, t1;
	unsigned long i;

	t0 = now_ns();
	for (i = 0; i < n; i++)
		syscall(SYS_getppid);  /* the raw syscall: glibc could cache a wrapper's answer */
	t1 = now_ns();
	printf("ok %llu %lu\n", (unsigned long long)(t1 - t0), n);
	return 0;
}

int main(void)
{
	char line[256], cmd[32];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		int fd = -1;
		unsigned ks = 0, vs = 0, a = 0;
		unsigned long n = 0;

		if (sscanf(line, "%31s", cmd) != 1)
			continue;
		if (!strcmp(cmd, "quit"))
			break;
		if (!strcmp(cmd, "lookup") || !strcmp(cmd, "update") || !strcmp(cmd, "delete")) {
			if (sscanf(line, "%*s %d %u %u %lu %u", &fd, &ks, &vs, &n, &a) != 5 || !a)
				printf("error usage: %s FD KS VS N NKEYS\n", cmd);
			else
				cmd_lookup(fd, ks, vs, n, a, cmd[0] == 'u' ? OP_UPDATE : cmd[0] == 'd' ? OP_DELETE : OP_LOOKUP);
		} else if (!strcmp(cmd, "lookup_batch")) {
			if (sscanf(line, "%*s %d %u %u %u", &fd, &ks, &vs, &a) != 4 || !a)
				printf("error usage: lookup_batch FD KS VS BATCH\n");
			else
				cmd_lookup_batch(fd, ks, vs, a);
		} else if (!strcmp(cmd, "update_batch")) {
			if (sscanf(line, "%*s %d %u %u %u", &fd, &ks, &vs, &a) != 4 || !a)
				printf("error usage: update_batch FD KS VS NKEYS\n");
			else
				cmd_update_batch(fd, ks, vs, a);
		} else if (!strcmp(cmd, "getppid")) {
			if (sscanf(line, "%*s %lu", &n) != 1)
				printf("error usage: getppid N\n");
			else
				cmd_getppid(n);
		} else if (!strcmp(cmd, "next_key")) {
			if (sscanf(line, "%*s %d %u %u", &fd, &ks, &vs) != 3)
				printf("error usage: next_key FD KS VS\n");
			else
				cmd_next_key(fd, ks, vs);
		} else {
			printf("error unknown command %s\n", cmd);
		}
	}
	return 0;
}
