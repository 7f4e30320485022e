#!/usr/bin/env bash
# Runs INSIDE the guest (started by vm/run-tests.sh through virtme-ng): the test suite against the project tree
# shared from the host, its report and exit status written to the report folder shared back to the host.
#   usage: guest-run.sh SRC PROJECT_DIR REPORT_DIR VENV [pytest args...]
# SRC is the host's tree shared read-only; it is mounted at PROJECT_DIR (the tree's path on the host, where the
# editable install points) under a tmpfs overlay, so the suite can write in the tree and the host's copy stays as is.
set -uo pipefail

src="$1"
project_dir="$2"
report_dir="$3"
venv="$4"
shift 4

mkdir -p /run/ebpfmaps-overlay "$project_dir"
mount -t tmpfs tmpfs /run/ebpfmaps-overlay
mkdir -p /run/ebpfmaps-overlay/upper /run/ebpfmaps-overlay/work
mount -t overlay -o "lowerdir=$src,upperdir=/run/ebpfmaps-overlay/upper,workdir=/run/ebpfmaps-overlay/work" \
  ebpfmaps-tree "$project_dir" || { echo "guest: cannot overlay $src on $project_dir"; exit 125; }
cd "$project_dir" || exit 125

# bpffs at its usual place too (the fixtures mount private ones; `make test` on the host mounts this one).
mkdir -p /sys/fs/bpf
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# Tracing tests may want tracefs; its absence is their probe's business, so failure here is not fatal.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

export CI=true                       # as in CI: a kernel that cannot run the tests fails the run instead of skipping
# bcc compiles against the headers of the guest's own kernel, merged by vm/fetch-kernel.sh (not the host's tree in
# .cache/, whose symlinks point at headers of another kernel that the guest root may not have).
export BCC_KERNEL_SOURCE="/opt/bcc-headers/$(uname -r)"
export HOME=/root
export PYTHONDONTWRITEBYTECODE=1
# The VM plugin (vm/pytest_vm_plugin.py) relaxes hypothesis' per-example deadline: TCG runs ~14x slower than a host.
export PYTHONPATH="$PWD/vm${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$venv/bin:$PATH"

echo "guest: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo), python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')"
start=$(date +%s)
"$venv/bin/python" -m pytest -p pytest_vm_plugin -p no:cacheprovider -q -ra \
  --junitxml="$report_dir/junit.xml" "$@" 2>&1 | tee "$report_dir/pytest.log"
rc=${PIPESTATUS[0]}
echo "guest: pytest exited $rc after $(( $(date +%s) - start )) s"
echo "$rc" >"$report_dir/exit-status"
sync
exit "$rc"
