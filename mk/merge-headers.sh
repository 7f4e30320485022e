#!/usr/bin/env bash
# Merge Debian's split kernel headers into one tree that bcc can compile against:
#   merge-headers.sh COMMON ARCH KBUILD DEST
# Debian ships a kernel's headers in two packages, the arch-independent tree (COMMON, .../linux-headers-X-common)
# and the amd64 one (ARCH, .../linux-headers-X-amd64: generated headers, .config, Module.symvers), with scripts/ and
# tools/ from linux-kbuild-X (KBUILD). bcc looks for include/linux/kconfig.h in one directory, which neither half
# has alone. DEST becomes a forest of symlinks: COMMON's files, ARCH's files over them, KBUILD's scripts and tools.
# It is built beside DEST and renamed into place, so a reader never sees half a tree; DEST/.complete marks it done.
set -euo pipefail

common="${1:?usage: merge-headers.sh COMMON ARCH KBUILD DEST}"
arch="${2:?usage: merge-headers.sh COMMON ARCH KBUILD DEST}"
kbuild="${3:?usage: merge-headers.sh COMMON ARCH KBUILD DEST}"
dest="${4:?usage: merge-headers.sh COMMON ARCH KBUILD DEST}"

for d in "$common" "$arch" "$kbuild/scripts"; do
  [ -d "$d" ] || { echo "merge-headers: $d is missing" >&2; exit 1; }
done

tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
cp -rs "$common/." "$tmp/"
rm -rf "$tmp/scripts" "$tmp/tools"
(cd "$arch" && find . -mindepth 1 \( -path ./scripts -o -path ./tools \) -prune -o -type d -print) |
  (cd "$tmp" && xargs -r mkdir -p)
(cd "$arch" && find . \( -path ./scripts -o -path ./tools \) -prune -o \( -type f -o -type l \) -print) |
  while read -r f; do ln -sfn "$arch/${f#./}" "$tmp/${f#./}"; done
ln -sfn "$kbuild/scripts" "$tmp/scripts"
[ -d "$kbuild/tools" ] && ln -sfn "$kbuild/tools" "$tmp/tools"
[ -f "$tmp/include/linux/kconfig.h" ] || { echo "merge-headers: no include/linux/kconfig.h in $common" >&2; exit 1; }
echo "$common + $arch + $kbuild" >"$tmp/.sources"
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "merge-headers: merged $common and $arch into $dest"
