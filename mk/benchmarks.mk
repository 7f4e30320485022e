# Benchmarks (benchmarks/run.py builds its C baseline, benchmarks/cbench.c, with -lbpf into benchmarks/build/).
#   make bench         full run (main Makefile): tables + benchmarks/results.json
#   make bench-quick   a few seconds, tiny maps (what tests/test_bench_smoke.py runs)
.PHONY: bench-quick
bench-quick: setup
	$(PY) benchmarks/run.py --quick --json benchmarks/build/results-quick.json
