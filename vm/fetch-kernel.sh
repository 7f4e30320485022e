#!/usr/bin/env bash
# Put Debian's newest kernel of a series (KERNEL=6.1 or 6.12) into the guest root and print its release:
#   apt-get download the image package (cached in vm/cache/debs), unpack it into the root with dpkg-deb -x
#   (/boot/vmlinuz-REL and /lib/modules/REL, found there by virtme-ng), run depmod, install the matching
#   kernel headers inside the root, and merge them into /opt/bcc-headers/REL (mk/merge-headers.sh), the tree
#   vm/guest-run.sh points BCC_KERNEL_SOURCE at so bcc compiles against the guest's own kernel.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

series="${1:?usage: fetch-kernel.sh 5.10|6.1|6.12}"
[ -d "$VM_ROOT/usr" ] || die "no guest root yet (run vm/build-root.sh)"

pkg="$(kernel_package "$series")"
suite="$(kernel_suite "$series")"
release="${pkg#linux-image-}"
if [ -f "$VM_ROOT/boot/vmlinuz-$release" ] && [ -f "$VM_ROOT/lib/modules/$release/modules.dep" ] &&
   [ -f "$VM_ROOT/opt/bcc-headers/$release/.complete" ]; then
  printf '%s\n' "$release"
  exit 0
fi

start=$SECONDS
mkdir -p "$VM_DEBS"
deb="$(ls "$VM_DEBS/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$deb" ]; then
  log "apt-get download $pkg"
  # Into a folder _apt may write to (apt drops privileges for downloads and warns otherwise).
  chmod 755 "$VM_CACHE" "$VM_DEBS"
  (cd "$VM_DEBS" && apt_in_suite "$suite" apt-get download "$pkg" 2>&1 | grep -v "unsandboxed" >&2 || true)
  deb="$(ls "$VM_DEBS/${pkg}_"*.deb | sort -V | tail -n 1)"
fi
log "unpacking $(basename "$deb") into the guest root"
# Not plain dpkg-deb -x: the root is merged-/usr (/lib -> usr/lib) and tar would replace that symlink with a
# directory holding only the modules, breaking every binary in the root. --keep-directory-symlink follows it.
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$VM_ROOT" --keep-directory-symlink
in_root depmod -a "$release"
if [ "$suite" = "$SUITE" ]; then
  log "installing linux-headers-$release in the guest root"
  in_root apt-get install -y -q --no-install-recommends "linux-headers-$release" >>"$VM_CACHE/apt.log" 2>&1 ||
    { tail -n 20 "$VM_CACHE/apt.log" >&2; die "could not install linux-headers-$release in the root"; }
  in_root apt-get clean
else
  # Another release's headers cannot be installed in this root (they depend on that release's compiler
  # packages), and bcc needs only their files: unpack the amd64 and common halves and the kbuild package.
  kbuild_pkg="linux-kbuild-${series}"
  log "unpacking linux-headers-$release (+ common, $kbuild_pkg) from $suite into the guest root"
  for p in "linux-headers-$release" "linux-headers-${release%-amd64}-common" "$kbuild_pkg"; do
    if ! ls "$VM_DEBS/${p}_"*.deb >/dev/null 2>&1; then
      (cd "$VM_DEBS" && apt_in_suite "$suite" apt-get download "$p" 2>&1 | grep -v "unsandboxed" >&2 || true)
    fi
    d="$(ls "$VM_DEBS/${p}_"*.deb 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$d" ] || die "could not download $p from $suite"
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$VM_ROOT" --keep-directory-symlink
  done
fi
# Debian splits the headers: linux-headers-REL (amd64) holds scripts -> /usr/lib/linux-kbuild-X/scripts, and the
# arch-independent half is linux-headers-X-common (REL without its -amd64).
kbuild="$(dirname "$(in_root readlink -f "/usr/src/linux-headers-$release/scripts")")"
in_root bash -s -- "/usr/src/linux-headers-${release%-amd64}-common" "/usr/src/linux-headers-$release" "$kbuild" \
  "/opt/bcc-headers/$release" <"$PROJECT_DIR/mk/merge-headers.sh" >&2 ||
  die "could not merge the headers of $release for bcc"
log "kernel $release ready in $((SECONDS - start)) s"
printf '%s\n' "$release"
