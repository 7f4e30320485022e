# Long property-based runs: the model tests (tests/model) and the API fuzz target (tests/fuzz).
#   make test-deep                 1000 examples x 50 steps per state machine, a long fuzz run
#   make fuzz FUZZ_SECONDS=120     the fuzz target alone, repeated with fresh seeds for about that long

FUZZ_SECONDS ?= 120

.PHONY: test-deep fuzz
test-deep: setup
	EBPFMAPS_DEEP=1 $(PY) -m pytest -q tests/model tests/fuzz

fuzz: setup
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -s tests/fuzz
