#!/usr/bin/env bash
# The collection's docsite as antsibull-docs builds it (module, filter and role pages from their docs and argument
# specs, the pages of docs/docsite/extra-docs.yml, docs/docsite/links.yml) into .build/docsite/build/html, after
# antsibull-docs' linter, the check that docs/docsite/rst is what docs/*.md make and that CHANGELOG.md is what
# changelogs/ makes. The collection comes from ANSIBLE_COLLECTIONS_PATH (make: the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."

python tests/docsite_pages.py --check
antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs --validate-collection-refs all \
  --disallow-unknown-collection-refs .
tests/changelog.sh --check

site=.build/docsite
rm -rf "$site"
mkdir -p "$(dirname "$site")"
mkdir -m 0755 "$site"  # sphinx-init wants a directory only its owner may write
antsibull-docs sphinx-init --use-current --fail-on-error --sphinx-theme alabaster --project ferry.runc \
  --title "ferry.runc" --html-short-title ferry.runc --dest-dir "$site" ferry.runc > /dev/null
# No intersphinx inventories: their hosts are out of reach here (and in CI).
echo 'intersphinx_mapping = {}' >> "$site/conf.py"
cd "$site"
chmod og-w rst  # as the build.sh that sphinx-init writes: antsibull-docs wants it so
antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --fail-on-error --use-current \
  --dest-dir rst ferry.runc
sphinx-build -M html rst build -c . -q -w warnings.log || { cat warnings.log; exit 1; }
# Without the inventories, the labels of Ansible's own docsite (ansible.builtin modules, common return values, action
# plugins, configuration settings) stay unresolved; any other warning fails.
if grep -v -E "undefined label: '(ansible_collections\.ansible\.builtin\.[a-z_]+|common_return_values|ansible_configuration_settings|action_plugins)'" warnings.log; then
  echo "the docsite build warned (above)"
  exit 1
fi
echo "ferry.runc docsite: $PWD/build/html/index.html"
