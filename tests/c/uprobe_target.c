/* A target for uprobe tests: waits for a line on stdin, then calls probe_target_fn(i) for i in 0..N-1
 * (N from argv[1]), prints the sum of its results and stays until stdin ends (so its mappings can be read).
 * noinline and used keep the function and its symbol. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline, used)) int probe_target_fn(int x)
{
	__asm__ volatile("" ::: "memory");
	return 2 * x + 1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	char line[16];
	long sum = 0;

	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int i = 0; i < n; i++)
		sum += probe_target_fn(i);
	printf("%ld\n", sum);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
