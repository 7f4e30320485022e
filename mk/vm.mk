# The suite inside VMs booting Debian's other kernels. Scripts in vm/, everything built in vm/cache/.
#   make vm-test KERNEL=6.1        one kernel (5.10, 6.1 or 6.12); VM_PYTEST_ARGS="tests/test_smoke.py" narrows the run
#   make vm-test-all               every kernel in VM_KERNELS, one after the other; fails if any failed
#   make vm-root                   just build the guest root (cached)
#   make setup-vm                  install every host package and tool the VM targets need
#   make vm-selfcheck              check, before booting, that every host binary the runner and suite call is there
# Host packages only these targets need (make test does not): QEMU, debootstrap for the guest root, and what
# virtme-ng calls on the host: modprobe/depmod (kmod), file and strings (binutils). vm/selfcheck.sh lists every
# host binary the runner and the suite call, with its package.
VM_DEB_PACKAGES := qemu-system-x86 debootstrap kmod file binutils python3
# virtme-ng from PyPI, in its own venv (vm/cache/tools) built with Debian's python3: that interpreter is also the
# guest's, so the wheels pip downloads there for the guest fit it. Pinned: the scripts rely on its options.
VM_VIRTME_NG    := virtme-ng==1.42
VM_KERNELS      ?= 5.10 6.1 6.12
KERNEL          ?= 6.1
VM_PYTEST_ARGS  ?=
VM_TOOLS_VENV   := vm/cache/tools
# The guest root holds what the suite uses on the host, except the host's 6.1 headers: each guest kernel gets
# its own headers (vm/fetch-kernel.sh).
VM_GUEST_DEB_PACKAGES := $(filter-out linux-headers-amd64,$(DEB_PACKAGES))

.PHONY: setup-vm vm-deps vm-selfcheck vm-root vm-test vm-test-all

setup-vm: vm-deps

vm-selfcheck:
	@vm/selfcheck.sh all

vm-deps: $(STAMPS)/deb
	@missing=""; for p in $(VM_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the VMs:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(VM_DEB_PACKAGES) >/dev/null; \
	fi
	@test -x $(VM_TOOLS_VENV)/bin/python || /usr/bin/python3 -m venv $(VM_TOOLS_VENV)
	@$(VM_TOOLS_VENV)/bin/vng --version >/dev/null 2>&1 || \
	  $(VM_TOOLS_VENV)/bin/python -m pip install -q '$(VM_VIRTME_NG)' 2>&1 | grep -v "is ignored: it is neither" || true
	@$(VM_TOOLS_VENV)/bin/vng --version >/dev/null || { echo "virtme-ng is not usable in $(VM_TOOLS_VENV)"; exit 1; }

vm-root: vm-deps vm-selfcheck
	@GUEST_DEB_PACKAGES="$(VM_GUEST_DEB_PACKAGES)" vm/build-root.sh

vm-test: vm-root
	GUEST_DEB_PACKAGES="$(VM_GUEST_DEB_PACKAGES)" vm/run-tests.sh $(KERNEL) $(VM_PYTEST_ARGS)

vm-test-all: vm-root
	@failed=""; for k in $(VM_KERNELS); do \
	  GUEST_DEB_PACKAGES="$(VM_GUEST_DEB_PACKAGES)" vm/run-tests.sh $$k $(VM_PYTEST_ARGS) || failed="$$failed $$k"; \
	done; \
	echo "== VM runs"; for k in $(VM_KERNELS); do cat vm/cache/reports/$$k/summary.txt 2>/dev/null || echo "$$k: no summary"; done; \
	if [ -n "$$failed" ]; then echo "VM runs failed on:$$failed"; exit 1; fi
