#!/usr/bin/env bash
# Build (once) the guest's root filesystem under vm/cache/root:
#   debootstrap minbase of Debian 12 from the mirror apt is configured with, plus
#   - udev, procps, kmod: virtme-ng's init needs them (without udev the guest's console output and exit status are lost);
#   - the Debian packages the suite uses (the Makefile's DEB_PACKAGES, passed in GUEST_DEB_PACKAGES);
#   - a venv built with the guest's own Debian python3 holding the project's [dev] extra from PyPI.
# The host's .venv cannot be reused: its interpreter lives under the host's pyenv, which the guest root lacks.
# Each step is stamped with a hash of what it depends on, so a rebuild happens only when that changes.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" = 0 ] || die "building the guest root needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is missing (make vm-deps installs it)"
[ -x "$VM_TOOLS/bin/pip" ] || die "the tools venv is missing (make vm-deps creates it)"

# virtme-ng's guest side needs udev/procps/kmod, and a static busybox for the initramfs that loads the 9p modules
# (passed with --busybox, so the host needs no busybox-static); python3-venv builds the guest venv.
BASE_PACKAGES="udev procps kmod busybox-static python3 python3-venv ca-certificates"
: "${GUEST_DEB_PACKAGES:?set GUEST_DEB_PACKAGES (mk/vm.mk passes the Makefile DEB_PACKAGES)}"

stamp_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
mkdir -p "$VM_CACHE"

# --- step 1: the Debian root ---------------------------------------------------------------------------------
deb_stamp="$(stamp_of "$SUITE" "$BASE_PACKAGES" "$GUEST_DEB_PACKAGES" "$(debian_archives)" "$(sha256sum <"$0")")"
if [ "$(cat "$VM_ROOT/.ebpfmaps-deb-stamp" 2>/dev/null)" != "$deb_stamp" ]; then
  start=$SECONDS
  mirror="$(main_mirror)"
  tmp="$VM_CACHE/root.building"
  rm -rf "$tmp"
  log "debootstrap $SUITE (minbase) from $mirror into $tmp"
  debootstrap --variant=minbase --include="${BASE_PACKAGES// /,}" "$SUITE" "$tmp" "$mirror" >"$VM_CACHE/debootstrap.log" 2>&1 ||
    { tail -n 30 "$VM_CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $VM_CACHE/debootstrap.log)"; }
  # The same archives as the host (main, updates, security), so the root gets current packages and kernel headers.
  debian_archives | while read -r uri release; do echo "deb $uri $release main"; done >"$tmp/etc/apt/sources.list"
  echo "ebpfmaps-vm" >"$tmp/etc/hostname"
  rm -rf "$VM_ROOT"
  mv "$tmp" "$VM_ROOT"
  log "installing the suite's Debian packages in the root: $GUEST_DEB_PACKAGES"
  in_root apt-get update -q >"$VM_CACHE/apt.log" 2>&1 || { tail -n 30 "$VM_CACHE/apt.log" >&2; die "apt-get update failed in the root"; }
  # shellcheck disable=SC2086  # the package list is a space-separated word list
  in_root apt-get install -y -q --no-install-recommends $GUEST_DEB_PACKAGES >>"$VM_CACHE/apt.log" 2>&1 ||
    { tail -n 30 "$VM_CACHE/apt.log" >&2; die "apt-get install failed in the root (log: $VM_CACHE/apt.log)"; }
  in_root apt-get upgrade -y -q >>"$VM_CACHE/apt.log" 2>&1 || die "apt-get upgrade failed in the root"
  in_root apt-get clean
  rm -f "$VM_ROOT/.ebpfmaps-venv-stamp"   # a new root needs a new venv
  echo "$deb_stamp" >"$VM_ROOT/.ebpfmaps-deb-stamp"
  log "Debian root ready in $((SECONDS - start)) s ($(du -sh "$VM_ROOT" | cut -f1))"
fi

# --- step 2: the guest's venv with the project's [dev] extra ----------------------------------------------------
# The requirement list comes from pyproject.toml, so the guest tests with what the host's `make setup` installs.
requirements="$("$VM_TOOLS/bin/python" - "$PROJECT_DIR/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    pyproject = tomllib.load(f)
project = pyproject["project"]
# The build backend's own requirements (setuptools, new enough for the SPDX license field) and wheel: the project
# is installed editable (PEP 660) inside the root without build isolation.
build = list(pyproject["build-system"]["requires"])
reqs = list(project.get("dependencies", [])) + project["optional-dependencies"]["dev"] + build + ["wheel"]
print("\n".join(reqs))
EOF
)"
venv_stamp="$(stamp_of "$requirements" "$(cat "$VM_ROOT/.ebpfmaps-deb-stamp")")"
if [ "$(cat "$VM_ROOT/.ebpfmaps-venv-stamp" 2>/dev/null)" != "$venv_stamp" ]; then
  start=$SECONDS
  printf '%s\n' "$requirements" >"$VM_CACHE/requirements.txt"
  # Download on the host with the host's pip settings (its index and certificates), for the guest's interpreter:
  # the tools venv runs Debian's python3, the same CPython 3.11 as the guest's, so the wheels fit.
  log "downloading the guest's Python packages"
  rm -rf "$VM_WHEELS" && mkdir -p "$VM_WHEELS"
  "$VM_TOOLS/bin/pip" download -q -d "$VM_WHEELS" -r "$VM_CACHE/requirements.txt" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  [ -n "$(ls -A "$VM_WHEELS")" ] || die "pip download fetched nothing"
  rm -rf "$VM_ROOT/tmp/wheels" "$VM_ROOT$GUEST_VENV"
  cp -r "$VM_WHEELS" "$VM_ROOT/tmp/wheels"
  cp "$VM_CACHE/requirements.txt" "$VM_ROOT/tmp/wheels/requirements.txt"
  # --system-site-packages: bcc's Python module comes from Debian (python3-bpfcc), as on the host.
  in_root python3 -m venv --system-site-packages "$GUEST_VENV"
  in_root "$GUEST_VENV/bin/pip" install -q --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt ||
    die "pip install failed in the root"
  rm -rf "$VM_ROOT/tmp/wheels"
  rm -f "$VM_ROOT/.ebpfmaps-project-stamp"
  echo "$venv_stamp" >"$VM_ROOT/.ebpfmaps-venv-stamp"
  log "guest venv ready in $((SECONDS - start)) s"
fi
