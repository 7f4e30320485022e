# bcc (python3-bpfcc) compiles its programs against kernel headers, and Debian ships none for the
# kernel this suite runs on. Debian's 6.1 headers work once the arch-independent (-common) and
# the amd64 packages are merged into one tree, with scripts/ and tools/ from linux-kbuild-6.1
# (mk/merge-headers.sh, which the VM guests use for their own kernels too). The tree is a forest of
# symlinks, built once, and used by setting BCC_KERNEL_SOURCE (tests/test_bcc.py and
# benchmarks/bench_bcc.py do when it is not set already).

BCC_HEADERS ?= $(CURDIR)/.cache/bcc-headers
BCC_KBUILD  ?= /usr/lib/linux-kbuild-6.1

.PHONY: bcc-headers
bcc-headers: $(BCC_HEADERS)/.complete

$(BCC_HEADERS)/.complete: mk/bcc.mk mk/merge-headers.sh $(STAMPS)/deb
	@common=$$(ls -d /usr/src/linux-headers-6.1.0-*-common 2>/dev/null | sort -V | tail -n 1); \
	if [ -z "$$common" ]; then echo "bcc-headers: no /usr/src/linux-headers-6.1.0-*-common (linux-headers-amd64)"; exit 1; fi; \
	mk/merge-headers.sh "$$common" "$${common%-common}-amd64" "$(BCC_KBUILD)" "$(BCC_HEADERS)"

# The bcc tests need the tree; build it before the suite runs.
test: bcc-headers
bench: bcc-headers
