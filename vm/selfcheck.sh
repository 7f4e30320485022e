#!/usr/bin/env bash
# Before anything boots: check that every host binary the suite and the VM runner call is installed, and name the
# Debian package that brings each missing one. The table is the one list of them; tests/test_vm_scripts.py checks
# it against dpkg (each binary really comes from the package named) and against the Makefile (each package that is
# not Essential is installed by `make setup` or `make setup-vm`).
#   vm/selfcheck.sh [suite|vm|all]      (default: all)
set -uo pipefail

# scope  binary               package            who calls it
TABLE='
suite  bash                   bash               Makefile, tests (essential)
suite  make                   make               tests (make -C . bcc-headers, print-var)
suite  apt-get                apt                Makefile (deb)
suite  dpkg-query             dpkg               Makefile (deb)
suite  mount                  mount              Makefile (bpffs), tests (private bpffs and cgroup2 mounts)
suite  umount                 mount              tests
suite  mountpoint             util-linux         Makefile (bpffs), vm/
suite  grep                   grep               tests
suite  gcc                    gcc                tests, benchmarks (C clients and baselines)
suite  cc                     gcc                tests/test_struct_layout.py
suite  clang                  clang              tests/bpfbuild.py (BPF objects)
suite  llvm-mc                llvm               tests/test_asm.py (assembler cross-check)
suite  bpftool                bpftool            tests, demo (cross-checks)
suite  chromium               chromium           tests/test_docs_site.py (the docs site, headless; mk/docs.mk)
vm     /usr/bin/python3       python3            mk/vm.mk (the Debian python3 that runs virtme-ng, as in the guest)
vm     qemu-system-x86_64     qemu-system-x86    vm/run-tests.sh, virtme-ng
vm     debootstrap            debootstrap        vm/build-root.sh
vm     modprobe               kmod               virtme-ng (modules for the guest initramfs)
vm     depmod                 kmod               virtme-ng
vm     file                   file               virtme-ng (kernel version, static busybox)
vm     strings                binutils           virtme-ng (kernel version when file cannot tell)
vm     chroot                 coreutils          vm/common.sh (in_root)
vm     timeout                coreutils          vm/run-tests.sh
vm     sha256sum              coreutils          vm/build-root.sh
vm     dpkg-deb               dpkg               vm/fetch-kernel.sh
vm     apt-cache              apt                vm/common.sh (kernel_package)
vm     tar                    tar                vm/fetch-kernel.sh
vm     awk                    mawk               vm/
vm     sed                    sed                vm/
'

scope="${1:-all}"
case "$scope" in suite|vm|all) ;; *) echo "usage: vm/selfcheck.sh [suite|vm|all]" >&2; exit 2 ;; esac

if [ "${SELFCHECK_PRINT_TABLE:-}" = 1 ]; then
  printf '%s\n' "$TABLE" | awk 'NF >= 3 { print $1, $2, $3 }'
  exit 0
fi

missing=()
packages=()
while read -r s bin pkg _; do
  [ -n "${s:-}" ] || continue
  [ "$scope" = all ] || [ "$scope" = "$s" ] || continue
  if ! command -v "$bin" >/dev/null 2>&1; then
    missing+=("$bin ($pkg)")
    case " ${packages[*]:-} " in *" $pkg "*) ;; *) packages+=("$pkg") ;; esac
  fi
done <<<"$TABLE"

if [ "${#missing[@]}" -gt 0 ]; then
  echo "selfcheck: missing host binaries: ${missing[*]}" >&2
  echo "selfcheck: install them with 'make setup setup-vm' (apt-get install ${packages[*]})" >&2
  exit 1
fi
echo "selfcheck: every host binary the $scope scope calls is installed"
