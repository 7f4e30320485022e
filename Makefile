# ebpfmaps: every target installs what it needs on a fresh Debian 12 machine (as root), idempotently.
#   make demo   the core at work on the real kernel
#   make test   the full test suite on the real kernel
#   make bench  benchmarks as ratios against a C libbpf baseline built in the same run
#   make lint   mypy --strict and ruff

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
BPFFS      ?= /sys/fs/bpf
STAMPS     := $(VENV)/.stamps
# Debian packages the project uses: libbpf and its headers, bpftool (cross-checks), clang/llvm (BPF C objects),
# gcc (C baselines and the struct layout test), bcc and the 6.1 headers it compiles against (interop tests),
# iproute2 (netns/veth), python3-venv (the virtualenv).
DEB_PACKAGES := libbpf1 libbpf-dev bpftool clang llvm gcc make libc6-dev python3-venv iproute2 \
                python3-bpfcc bpfcc-tools linux-headers-amd64 time
PYTEST_ARGS ?=

.PHONY: setup deb venv bpffs demo test bench lint clean

setup: deb venv bpffs

deb: $(STAMPS)/deb
$(STAMPS)/deb: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $(DEB_PACKAGES) >/dev/null; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml $(STAMPS)/deb
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev,docs,bench]'
	@# bcc's Python module comes from Debian (python3-bpfcc); expose just that package to the venv.
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  ln -sfn /usr/lib/python3/dist-packages/bcc "$$site/bcc"
	@mkdir -p $(STAMPS) && touch $@

bpffs:
	@mountpoint -q $(BPFFS) 2>/dev/null && [ "$$(stat -f -c %T $(BPFFS))" = bpf_fs ] || \
	  { mkdir -p $(BPFFS) && mount -t bpf bpf $(BPFFS) && echo "mounted bpffs at $(BPFFS)"; }

demo: setup
	@$(PY) -m ebpfmaps.demo

test: setup
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run.py

lint: setup
	$(PY) -m mypy --strict
	$(PY) -m ruff check ebpfmaps shim tests benchmarks examples

# Each area's extra targets live in mk/*.mk (bench, bcc, vm...).
-include mk/*.mk

clean:
	rm -rf $(VENV) build *.egg-info tests/bpf/*.o benchmarks/build
