#!/usr/bin/env bash
# CHANGELOG.md as `antsibull-changelog release` writes it for galaxy.yml's version from changelogs/changelog.yaml and
# every fragment. The release runs in a copy, so the fragments and changelog.yaml stay as they are until a real
# release.   tests/changelog.sh           writes CHANGELOG.md (make changelog)
#            tests/changelog.sh --check   fails when CHANGELOG.md is not what the fragments make
set -euo pipefail
cd "$(dirname "$0")/.."
antsibull-changelog lint
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

copy=.build/changelog
rm -rf "$copy"
mkdir -p "$copy"
cp -r galaxy.yml changelogs "$copy/"
rm -f "$copy/changelogs/.plugin-cache.yaml"
version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
# The plugin descriptions of "New Modules" come from ansible-doc of the collection on ANSIBLE_COLLECTIONS_PATH.
if ! (cd "$copy" && antsibull-changelog release --version "$version") > "$copy/release.log" 2>&1; then
  cat "$copy/release.log"
  exit 1
fi

if [ "${1:-}" = --check ]; then
  if ! diff -u CHANGELOG.md "$copy/CHANGELOG.md"; then
    echo "CHANGELOG.md is not what changelogs/ makes: run make changelog"
    exit 1
  fi
  echo "CHANGELOG.md is up to date with changelogs/ (version $version)"
else
  cp "$copy/CHANGELOG.md" CHANGELOG.md
fi
