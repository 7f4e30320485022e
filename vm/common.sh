# Shared settings and helpers for the VM scripts (sourced, not run).
# Everything built or downloaded lives under vm/cache/ (ignored by git) so a second run reuses it.

set -euo pipefail

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_DIR="$(cd "$VM_DIR/.." && pwd)"
VM_CACHE="${VM_CACHE:-$VM_DIR/cache}"
VM_ROOT="$VM_CACHE/root"             # the guest's root filesystem (debootstrap minbase + what the suite needs)
VM_TOOLS="$VM_CACHE/tools"           # a venv holding virtme-ng, kept apart from the project's .venv
VM_DEBS="$VM_CACHE/debs"             # kernel image packages fetched with apt-get download
VM_WHEELS="$VM_CACHE/wheels"         # the suite's Python packages, downloaded on the host for the guest's venv
VM_REPORTS="$VM_CACHE/reports"       # one folder per kernel: pytest log, junit xml, exit status
GUEST_VENV=/opt/ebpfmaps-venv        # the guest's venv, built with Debian's python3 inside the root
SUITE=bookworm

log() { printf '[vm] %s\n' "$*" >&2; }
# The stages of a run, numbered, with the time since the run began: on a terminal the line is drawn in bold
# so the stages stand out from the tools' output; piped (CI logs) it is the same plain line as log's.
stage() {
  local text="[vm $1/$2 +$((SECONDS / 60))m$((SECONDS % 60))s] $3"
  if [ -t 2 ]; then printf '\033[1m%s\033[0m\n' "$text" >&2; else printf '%s\n' "$text" >&2; fi
}
die() { printf '[vm] error: %s\n' "$*" >&2; exit 1; }

# The Debian archives this machine's apt is configured with (main archive and security), so the guest root
# is built from the same mirror and nothing comes from elsewhere. Prints "URI RELEASE" lines.
debian_archives() {
  apt-get indextargets --format '$(ORIGIN)|$(REPO_URI)|$(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -F'|' -v suite="$SUITE" '$1 == "Debian" && ($3 == suite || index($3, suite "-") == 1) { print $2, $3 }' |
    sort -u
}

main_mirror() {
  local uri
  uri="$(debian_archives | awk -v suite="$SUITE" '$2 == suite { print $1; exit }')"
  [ -n "$uri" ] || die "apt has no Debian '$SUITE' archive configured (run apt-get update?)"
  printf '%s\n' "$uri"
}

# Run a command inside the guest root on the host (package installs at build time), with a clean environment
# so the host's settings (pip mirrors, virtualenvs) do not leak in. /proc and /dev are bound for apt and pip.
in_root() {
  local mounted=()
  for d in proc sys dev; do
    if ! mountpoint -q "$VM_ROOT/$d"; then
      mount --bind "/$d" "$VM_ROOT/$d"
      mounted+=("$VM_ROOT/$d")
    fi
  done
  local rc=0
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive chroot "$VM_ROOT" "$@" || rc=$?
  local m
  for m in "${mounted[@]}"; do umount "$m" || umount -l "$m"; done
  return "$rc"
}

# The Debian release whose archive holds a kernel series: bookworm (the host's, and the guest root's) has 6.1 and
# 6.12; 5.10 is bullseye's kernel.
kernel_suite() {
  case "$1" in
    6.1 | 6.12) echo "$SUITE" ;;
    5.10) echo bullseye ;;
    *) die "unknown KERNEL=$1 (use 5.10, 6.1 or 6.12)" ;;
  esac
}

# apt-get/apt-cache on another release's archives (the host's mirrors, other suite names), with a private apt
# state under vm/cache/apt-SUITE so the host's apt configuration and lists are left alone. Used only to look up
# and download packages (never to install them on the host):  apt_in_suite SUITE apt-get|apt-cache ARGS...
apt_in_suite() {
  local suite="$1" tool="$2"
  shift 2
  if [ "$suite" = "$SUITE" ]; then
    "$tool" "$@"
    return
  fi
  local dir="$VM_CACHE/apt-$suite"
  mkdir -p "$dir/lists/partial" "$dir/archives/partial"
  if [ ! -s "$dir/sources.list" ]; then
    debian_archives | awk -v host="$SUITE" -v other="$suite" '{ sub("^" host, other, $2); print "deb", $1, $2, "main" }' \
      >"$dir/sources.list"
  fi
  "$tool" -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir" -o Dir::Cache::pkgcache="" \
    -o Dir::Cache::srcpkgcache="" "$@"
}

# Refresh a foreign suite's package lists once a day (the host's own lists are apt's business).
apt_lists_fresh() {
  local suite="$1"
  [ "$suite" = "$SUITE" ] && return 0
  local stamp="$VM_CACHE/apt-$suite/lists/.updated"
  if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
    log "apt-get update for $suite (private lists in $VM_CACHE/apt-$suite)"
    apt_in_suite "$suite" apt-get update >/dev/null 2>&1 || die "apt-get update of the $suite archives failed"
    touch "$stamp"
  fi
}

# The newest Debian kernel image package of a series: 5.10 -> linux-image-5.10.0-N-amd64 (bullseye),
# 6.1 -> linux-image-6.1.0-N-amd64, 6.12 -> linux-image-6.12.N+deb12-amd64 (the signed images; they boot under QEMU
# like the unsigned ones).
kernel_package() {
  local series="$1" pattern suite
  case "$series" in
    5.10) pattern='^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
    6.1) pattern='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-amd64$' ;;
    *) die "unknown KERNEL=$series (use 5.10, 6.1 or 6.12)" ;;
  esac
  suite="$(kernel_suite "$series")"
  apt_lists_fresh "$suite"
  local pkg
  pkg="$(apt_in_suite "$suite" apt-cache search --names-only "$pattern" | awk '{ print $1 }' | sort -V | tail -n 1)"
  [ -n "$pkg" ] || die "apt knows no package matching $pattern in $suite (run apt-get update?)"
  printf '%s\n' "$pkg"
}
