# The package: an sdist and a wheel, and the wheel tested on every CPython 3.9-3.13 on the machine.
#   make dist                                 dist/ebpfmaps-VERSION.tar.gz and dist/ebpfmaps-VERSION-py3-none-any.whl
#   make test-pythons                         the wheel in a fresh virtualenv per CPython found (pyenv or PATH),
#                                             the core tests run there from a copy outside the repository
#   make test-pythons PYTHONS="oldest newest" only some: 3.N, oldest, newest (CI runs these two)

PYTHONS ?= all
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL   := dist/ebpfmaps-$(VERSION)-py3-none-any.whl

.PHONY: dist test-pythons

dist: setup
	@rm -rf dist
	set -o pipefail; $(PY) -m build --outdir dist . 2>&1 | grep -v "is ignored: it is neither" | tail -n 3
	@ls -l dist

test-pythons: dist bpffs
	mk/test-pythons.sh $(WHEEL) $(PYTHONS)
