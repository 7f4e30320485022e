# bcc (python3-bpfcc) compiles its programs against kernel headers, and Debian ships none for the
# kernel this suite runs on. Debian's 6.1 headers work once the arch-independent (-common) and
# the amd64 packages are merged into one tree, with scripts/ and tools/ from linux-kbuild-6.1
# (DESIGN §5). The tree is a forest of symlinks (cp -s), built once, and used by setting
# BCC_KERNEL_SOURCE (tests/test_bcc*.py and benchmarks/bench_bcc.py do).

BCC_HEADERS ?= $(CURDIR)/.cache/bcc-headers
BCC_KBUILD  ?= /usr/lib/linux-kbuild-6.1

.PHONY: bcc-headers
bcc-headers: $(BCC_HEADERS)/.complete

$(BCC_HEADERS)/.complete: mk/bcc.mk $(STAMPS)/deb
	@set -e; \
	common=$$(ls -d /usr/src/linux-headers-6.1.0-*-common 2>/dev/null | sort -V | tail -n 1); \
	if [ -z "$$common" ]; then echo "bcc-headers: no /usr/src/linux-headers-6.1.0-*-common (linux-headers-amd64)"; exit 1; fi; \
	arch="$${common%-common}-amd64"; \
	if [ ! -d "$$arch" ]; then echo "bcc-headers: $$arch is missing"; exit 1; fi; \
	if [ ! -d "$(BCC_KBUILD)/scripts" ]; then echo "bcc-headers: $(BCC_KBUILD) is missing (linux-kbuild-6.1)"; exit 1; fi; \
	tmp="$(BCC_HEADERS).tmp.$$$$"; rm -rf "$$tmp"; mkdir -p "$$tmp"; \
	cp -rs "$$common/." "$$tmp/"; \
	rm -rf "$$tmp/scripts" "$$tmp/tools"; \
	(cd "$$arch" && find . -mindepth 1 \( -path ./scripts -o -path ./tools \) -prune -o -type d -print) | \
	  (cd "$$tmp" && xargs -r mkdir -p); \
	(cd "$$arch" && find . \( -path ./scripts -o -path ./tools \) -prune -o \( -type f -o -type l \) -print) | \
	  while read -r f; do ln -sfn "$$arch/$${f#./}" "$$tmp/$${f#./}"; done; \
	ln -sfn "$(BCC_KBUILD)/scripts" "$$tmp/scripts"; \
	ln -sfn "$(BCC_KBUILD)/tools" "$$tmp/tools"; \
	echo "$$common + $$arch" > "$$tmp/.sources"; \
	rm -rf "$(BCC_HEADERS)"; mv "$$tmp" "$(BCC_HEADERS)"; touch "$@"; \
	echo "bcc-headers: merged $$common and $$arch into $(BCC_HEADERS)"

# The bcc tests need the tree; build it before the suite runs.
test: bcc-headers
bench: bcc-headers
