#!/usr/bin/env bash
# The collection as a user installs it: ansible-galaxy collection build, the tarball's files checked against what
# build_ignore must leave out and keep, an install into an empty collections path, then from there ansible-doc of
# every module, filter and role and a syntax check of every playbook.
#   tests/collection-install.sh [BIN_DIR]   (the ansible-core to use; default .venv/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.venv/bin}" && pwd)
mkdir -p .build
work=$(mktemp -d "$PWD/.build/collection-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
core=$("$bin/ansible" --version | sed -n 1p)
echo "$core"

"$bin/ansible-galaxy" collection build --output-path "$work/dist" .
tarball=$(echo "$work"/dist/ferry-runc-*.tar.gz)

# The top level of the tarball, exactly; below it, nothing of Python's caches or changelog's plugin cache.
expected="CHANGELOG.md FILES.json LICENSE MANIFEST.json README.md bindep.txt changelogs docs inventory.example meta
playbooks plugins requirements.txt roles"
tar -tzf "$tarball" | sed 's#^\./##; s#/.*##' | sort -u | grep -v '^$' > "$work/top-level"
if ! diff <(tr ' ' '\n' <<<"$expected" | sort) "$work/top-level" > "$work/top-level.diff"; then
  echo "the tarball's top level differs from the expected one (< missing, > not expected):"
  cat "$work/top-level.diff"
  exit 1
fi
if tar -tzf "$tarball" | grep -E '(__pycache__|\.pyc$|\.plugin-cache\.yaml$)'; then
  echo "the tarball holds the files above, which build_ignore or ansible-galaxy should leave out"
  exit 1
fi

# Nothing but the install: no ansible.cfg, no other collections path, no collections from site-packages.
export ANSIBLE_CONFIG=$work/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
: > "$ANSIBLE_CONFIG"
cd "$work"
"$bin/ansible-galaxy" collection install -p "$ANSIBLE_COLLECTIONS_PATH" "$tarball"
installed=$ANSIBLE_COLLECTIONS_PATH/ansible_collections/ferry/runc

names() {  # names of the plugins or roles in a directory of the install; then find's tests
  find "$installed/$1" -mindepth 1 -maxdepth 1 "${@:2}" ! -name '_*' -printf '%f\n' | sed 's/\.py$//' | sort | sed 's/^/ferry.runc./'
}
check_docs() {  # type, names: each name documented, from the install
  local type=$1
  shift
  "$bin/ansible-doc" -t "$type" --json "$@" > "$work/doc.json"
  "$bin/python" - "$type" "$installed" "$work/doc.json" "$@" <<'PY'
import json, sys
kind, installed, path, *names = sys.argv[1:]
docs = json.load(open(path, encoding="utf-8"))
missing = [name for name in names if not docs.get(name)]
if missing:
    sys.exit(f"ansible-doc -t {kind} found no documentation for {', '.join(missing)}")
for name in names:
    where = docs[name].get("doc", {}).get("filename") or docs[name].get("path", "")
    if not where.startswith(installed):
        sys.exit(f"ansible-doc -t {kind} read {name} from {where}, not from the install")
print(f"ansible-doc -t {kind}: {len(names)} documented: {' '.join(names)}")
PY
}
mapfile -t modules < <(names plugins/modules -name '*.py')
mapfile -t filters < <(names plugins/filter -name '*.py')
mapfile -t roles < <(names roles -type d)
check_docs module "${modules[@]}"
check_docs filter "${filters[@]}"
check_docs role "${roles[@]}"

for playbook in "$installed"/playbooks/*.yml; do
  name=ferry.runc.$(basename "$playbook" .yml)
  "$bin/ansible-playbook" "$name" --syntax-check -i localhost,
done
echo "ferry.runc collection-install passed: $(basename "$tarball") with $core"
