#!/usr/bin/env bash
# Run the test suite in a VM booting Debian's kernel of a series, against this project tree:
#   vm/run-tests.sh 5.10|6.1|6.12 [pytest args...]
# Builds/reuses the guest root (vm/build-root.sh), fetches the kernel (vm/fetch-kernel.sh), installs the project
# (editable) into the guest's venv, boots with virtme-ng (KVM when it works, QEMU's TCG otherwise) and exits with
# the guest's pytest status. The report lands in vm/cache/reports/KERNEL/ (console.log, pytest.log, junit.xml).
# Environment: VM_ACCEL=auto|kvm|tcg, VM_CPUS (2), VM_MEMORY (2G), VM_TIMEOUT seconds for the whole boot (5400).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

series="${1:?usage: run-tests.sh 5.10|6.1|6.12 [pytest args...]}"
shift
[ "$(id -u)" = 0 ] || die "needs root (chroot for the project install); users without root: see vagrant/"
[ -x "$VM_TOOLS/bin/vng" ] || die "virtme-ng is missing (make vm-deps installs it)"
export PATH="$VM_TOOLS/bin:$PATH"   # vng runs virtme-run, which must be on PATH

stage 1 4 "guest root (built once, then cached)"
"$VM_DIR/build-root.sh"
stage 2 4 "kernel $series (downloaded once, with its headers)"
release="$("$VM_DIR/fetch-kernel.sh" "$series")"
kimg="$VM_ROOT/boot/vmlinuz-$release"

# --- the project, installed editable into the guest venv at the tree's own path ----------------------------------
stage 3 4 "the project in the guest venv"
# The guest sees this tree at the same absolute path (vm/guest-run.sh mounts it there), so the editable install
# made here on the host resolves there too. Only pyproject.toml and the tree's path
# decide what the install contains, so it is redone only when they change.
project_stamp="$( (cat "$PROJECT_DIR/pyproject.toml"; echo "$PROJECT_DIR"; cat "$VM_ROOT/.ebpfmaps-venv-stamp") | sha256sum | cut -c1-16)"
mkdir -p "$VM_ROOT$PROJECT_DIR" "$VM_ROOT/vm-report" "$VM_ROOT/ebpfmaps-src"
if [ "$(cat "$VM_ROOT/.ebpfmaps-project-stamp" 2>/dev/null)" != "$project_stamp" ]; then
  log "installing the project (editable) into the guest venv"
  mount --bind "$PROJECT_DIR" "$VM_ROOT$PROJECT_DIR"
  rc=0
  in_root "$GUEST_VENV/bin/pip" install -q --no-index --no-deps --no-build-isolation -e "$PROJECT_DIR" >&2 || rc=$?
  umount "$VM_ROOT$PROJECT_DIR"
  [ "$rc" = 0 ] || die "editable install of the project into the guest venv failed"
  echo "$project_stamp" >"$VM_ROOT/.ebpfmaps-project-stamp"
fi

# --- accelerator -----------------------------------------------------------------------------------------------
# /dev/kvm can exist and open yet not run a guest (nested virtualization that stops at the switch to long mode, as on
# this project's machines), so try it: KVM prints the kernel's first line within a second; give it 15 s. The answer
# is remembered per host boot.
kvm_works() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  local memo="$VM_CACHE/kvm-probe" boot_id
  boot_id="$(cat /proc/sys/kernel/random/boot_id)"
  if [ -f "$memo" ] && [ "$(head -n 1 "$memo")" = "$boot_id" ]; then
    [ "$(sed -n 2p "$memo")" = yes ]
    return
  fi
  local answer=no
  if timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none -no-reboot \
      -serial stdio -kernel "$kimg" -append "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 init=/nonexistent" \
      </dev/null 2>/dev/null | grep -q -m1 "Linux version"; then
    answer=yes
  fi
  printf '%s\n%s\n' "$boot_id" "$answer" >"$memo"
  [ "$answer" = yes ]
}
accel="${VM_ACCEL:-auto}"
if [ "$accel" = auto ]; then
  if kvm_works; then accel=kvm; else accel=tcg; fi
fi
accel_args=()
[ "$accel" = kvm ] || accel_args=(--disable-kvm)

# --- boot and run ----------------------------------------------------------------------------------------------
report="$VM_REPORTS/$series"
rm -rf "$report" && mkdir -p "$report"
pytest_args=""
for a in "$@"; do pytest_args+=" $(printf '%q' "$a")"; done
guest_cmd="env EBPFMAPS_VM_ACCEL=$accel bash /ebpfmaps-src/vm/guest-run.sh /ebpfmaps-src $(printf '%q' "$PROJECT_DIR") /vm-report $GUEST_VENV$pytest_args"

stage 4 4 "boot and run the suite (pytest's progress follows)"
log "booting $release with $accel (${VM_CPUS:-2} CPUs, ${VM_MEMORY:-2G}); report in $report"
start=$SECONDS
set +e
# --force-9p: virtiofsd is not needed then. The tree is shared read-only; the guest lays a tmpfs overlay on it so the
# suite may write there (BPF objects compiled by the tests, hypothesis' database) without touching the host's copy,
# which other runs use at the same time. (virtme-ng's own --overlay-rwdir overlays the guest root's folder, not a
# host one, and is mounted under the shares.)
# Output goes through cat: vng behaves as without a terminal (no console control sequences, no stdin).
timeout "${VM_TIMEOUT:-5400}" vng --run "$kimg" --root "$VM_ROOT" --force-9p "${accel_args[@]}" \
  --busybox "$VM_ROOT/bin/busybox" --cpus "${VM_CPUS:-2}" --memory "${VM_MEMORY:-2G}" \
  --rodir "/ebpfmaps-src=$PROJECT_DIR" --rwdir "/vm-report=$report" \
  --exec "$guest_cmd" </dev/null 2>&1 | cat | tee "$report/console.log"
vng_rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - start))

# The guest writes its pytest status to the shared folder; that, not vng's own status, is the answer
# (a guest that never got to run pytest leaves no status and counts as a failure).
if [ -f "$report/exit-status" ]; then
  rc="$(cat "$report/exit-status")"
else
  log "the guest left no exit status (vng exited $vng_rc): boot or setup failed, see $report/console.log"
  rc=125
fi
counts="$("$VM_TOOLS/bin/python" - "$report/junit.xml" <<'EOF' 2>/dev/null || echo "no junit report"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
print(f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped")
EOF
)"
summary="kernel $release ($accel): $counts; boot+suite ${elapsed} s; exit $rc"
echo "$summary" >"$report/summary.txt"
log "$summary"
exit "$rc"
