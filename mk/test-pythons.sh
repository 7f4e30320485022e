#!/usr/bin/env bash
# Installs the built wheel (not the source tree) into a fresh virtualenv for each CPython 3.9-3.13 found on this
# machine and runs the core test subset there, from a copy of tests/ outside the repository, on the real kernel.
#
#   mk/test-pythons.sh WHEEL [VERSION...]
#
# VERSIONs are minor versions ("3.9"), "oldest", "newest" or "all" (the default). Interpreters are looked for in
# pyenv's versions (`pyenv root`, $PYENV_ROOT or ~/.pyenv) and as python3.N on PATH; the newest patch release of
# each minor version wins. A version asked for by number that is not found is an error.
set -euo pipefail

wheel=${1:?usage: mk/test-pythons.sh WHEEL [VERSION...]}
shift
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(all)
repo=$(cd "$(dirname "$0")/.." && pwd)
wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
work=${TEST_PYTHONS_DIR:-$repo/build/pythons}
# The core subset: everything about kernel maps from Python, no compilers, bcc or network namespaces.
subset=${TEST_PYTHONS_TESTS:-"tests/test_core_*.py tests/test_smoke.py tests/test_shim_providers.py"}

# --- find the interpreters: "MINOR PATH" lines, one per minor version 3.9..3.13, newest patch first
candidates() {
  local root
  root=$( (command -v pyenv >/dev/null && pyenv root) || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  ls -d "$root"/versions/*/bin/python3 2>/dev/null || true
  for n in 9 10 11 12 13; do command -v "python3.$n" || true; done
}
declare -A found=() found_patch=()
while read -r py; do
  [ -x "$py" ] || continue
  ver=$("$py" -c 'import sys; print("%d.%d %d" % sys.version_info[:3] if sys.implementation.name == "cpython" else "")' 2>/dev/null) || continue
  [ -n "$ver" ] || continue
  minor=${ver% *}; patch=${ver#* }
  case $minor in 3.9|3.10|3.11|3.12|3.13) ;; *) continue ;; esac
  if [ -z "${found[$minor]:-}" ] || [ "$patch" -gt "${found_patch[$minor]}" ]; then
    found[$minor]=$py; found_patch[$minor]=$patch
  fi
done < <(candidates)
[ ${#found[@]} -gt 0 ] || { echo "test-pythons: no CPython 3.9-3.13 found (pyenv versions or python3.N on PATH)"; exit 1; }
mapfile -t minors < <(printf '%s\n' "${!found[@]}" | sort -V)
echo "test-pythons: found ${minors[*]}"

selected=()
for w in "${wanted[@]}"; do
  case $w in
    all) selected+=("${minors[@]}") ;;
    oldest) selected+=("${minors[0]}") ;;
    newest) selected+=("${minors[-1]}") ;;
    3.*) [ -n "${found[$w]:-}" ] || { echo "test-pythons: CPython $w not found"; exit 1; }; selected+=("$w") ;;
    *) echo "test-pythons: unknown version '$w' (3.N, oldest, newest, all)"; exit 1 ;;
  esac
done
mapfile -t selected < <(printf '%s\n' "${selected[@]}" | sort -uV)

# --- the tests, copied outside the repository so that only the installed package can be imported
rm -rf "$work"; mkdir -p "$work"
cp -r "$repo/tests" "$work/tests"
find "$work/tests" -name __pycache__ -prune -exec rm -rf {} +
cat > "$work/pytest.ini" <<INI
[pytest]
addopts = -ra -p no:cacheprovider
timeout = 600
markers =
    slow: long-running (large maps, stress)
    vm: runs inside the VM integration suite too
INI

status=0
summary=()
for minor in "${selected[@]}"; do
  py=${found[$minor]}
  venv=$work/venv-$minor
  echo "== CPython $minor ($py): fresh virtualenv, wheel $(basename "$wheel")"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[test,numpy]" 2>&1 | grep -v "is ignored: it is neither" || true
  # The package must come from the virtualenv's site-packages, typed, with its entry points.
  (cd "$work" && "$venv/bin/python" - "$venv" <<'PY'
import importlib.metadata as md, os, sys
import ebpfmaps, ebpfmaps_shim
venv = os.path.realpath(sys.argv[1])
for mod in (ebpfmaps, ebpfmaps_shim):
    where = os.path.realpath(mod.__file__)
    assert where.startswith(venv + os.sep), f"{mod.__name__} imported from {where}, not from {venv}"
    assert os.path.exists(os.path.join(os.path.dirname(where), "py.typed")), f"{mod.__name__} has no py.typed"
meta = md.metadata("ebpfmaps")
assert meta["Version"] == ebpfmaps.__version__, (meta["Version"], ebpfmaps.__version__)
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
from ebpfmaps.extension import entry_points_in
assert any(e.name == "shim" for e in entry_points_in("ebpfmaps.extensions"))
print(f"installed ebpfmaps {ebpfmaps.__version__} at {os.path.dirname(ebpfmaps.__file__)}")
PY
  ) || { status=1; summary+=("$minor: the installed package is wrong"); continue; }
  log=$work/pytest-$minor.log
  # One core test runs its child as uid 65534 (setpriv). A pyenv interpreter under /root (mode 0700) cannot load
  # its libpython for that user; the test then runs in make test only, and the summary says so.
  deselect=()
  unprivileged=tests/test_core_syscalls.py::test_unprivileged_users_see_permission_denied
  if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ] && \
     ! setpriv --reuid=65534 --regid=65534 --clear-groups "$venv/bin/python" -c pass >/dev/null 2>&1; then
    deselect=(--deselect "$unprivileged")
    echo "   uid 65534 cannot run this interpreter: $unprivileged is left to make test"
  fi
  # shellcheck disable=SC2086
  if ! (cd "$work" && "$venv/bin/python" -m pytest -q "${deselect[@]}" $subset) 2>&1 | tee "$log" | tail -n 3; then
    status=1
  fi
  full=$("$venv/bin/python" -c 'import platform; print(platform.python_version())')
  counts=$(grep -E '(passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//')
  note=""
  [ ${#deselect[@]} -eq 0 ] || note=" (1 deselected: uid 65534 cannot run it)"
  summary+=("CPython $full: $counts$note")
done
echo "== test-pythons"
printf '%s\n' "${summary[@]}"
exit $status
