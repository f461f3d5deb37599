#!/usr/bin/env bash
# Runs ansible-test sanity or the unit tests under one ansible-core series, in the virtual environment
# .venv-core-<series> made with a Python that series supports; or installs the built collection with it and
# reads its docs (tests/collection-install.sh); or only makes the environment (venv, for the lab's case 13 of faults):
#   tests/core-versions.sh 2.16 sanity|unit|install|venv
# Without such a Python here the leg says "not-run" and fails, so a leg that did not run never counts as passed.
set -euo pipefail
cd "$(dirname "$0")/.."

series=$1 what=$2
# The lowest ansible-core that meta/runtime.yml allows and the newest release, each with the controller Pythons it
# supports, preferred first (2.16 is Ubuntu 24.04's, with its Python 3.12; Debian 13 has Python 3.13).
case $series in
  2.16) version=2.16.19 pythons="3.12 3.11 3.10" ;;
  2.21) version=2.21.5 pythons="3.13 3.12" ;;
  *) echo "unknown ansible-core series: $series" >&2; exit 2 ;;
esac
step="core-$series-$what"

find_python() {
  local v py
  for v in $pythons; do
    for py in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" /usr/local/bin/python"$v" /usr/bin/python"$v"; do
      if [ -x "$py" ] && "$py" -c 'import ensurepip, venv' 2>/dev/null; then
        echo "$py"
        return 0
      fi
    done
  done
  return 1
}

if ! python=$(find_python); then
  echo "ferry.runc test step not-run: $step: ansible-core $version needs Python ${pythons// / or }, none found here"
  exit 3
fi
py_version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

# The environment is made again only when the version, the Python or tests/requirements-core.txt changed.
venv=.venv-core-$series
key=$( { echo "$version $python $py_version"; cat tests/requirements-core.txt; } | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$key" ]; then
  echo "making $venv with Python $py_version"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "ansible-core==$version" -r tests/requirements-core.txt
  echo "$key" > "$venv/.installed"
fi
export PATH="$PWD/$venv/bin:$PATH"
echo "ansible-core $("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)') on Python $py_version: $what"

case $what in
  venv)
    ;;
  unit)
    "$venv/bin/python" -m pytest -q tests/unit
    ;;
  sanity)
    # As in the Makefile's sanity target: ansible-test sees only what git knows, under ansible_collections/ferry/runc.
    root=.build/sanity-core-$series/ansible_collections/ferry/runc
    mkdir -p "$root"
    rsync -a --delete --exclude=.git --filter=':- .gitignore' ./ "$root/"
    (cd "$root" && { [ -d .git ] || git init -q; } && git add -A)
    "$venv/bin/python" tests/sanity/seed_pip_bootstrap.py
    (cd "$root" && ansible-test sanity --venv --python "${py_version%.*}")
    ;;
  install)
    tests/collection-install.sh "$venv/bin"
    ;;
  *) echo "unknown leg: $what (sanity, unit, install or venv)" >&2; exit 2 ;;
esac
echo "ferry.runc test step passed: $step (ansible-core $version, Python $py_version)"
