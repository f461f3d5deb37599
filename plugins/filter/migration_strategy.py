# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_strategy
short_description: Choose a live migration's strategy from what the two hosts support
version_added: 1.0.0
description:
  - Resolves V(auto) to V(pre-copy) when the source tracks dirty memory, else V(post-copy) when the destination
    has userfaultfd, else V(stop-and-copy); checks an explicitly requested strategy against the same features.
  - Fails with a message naming the host and the missing feature.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._features
options:
  _input:
    description: The requested strategy.
    type: str
    required: true
  source:
    description: The source host's name, for messages.
    type: str
    default: source
  destination:
    description: The destination host's name, for messages.
    type: str
    default: destination
"""

EXAMPLES = r"""
- name: Decide the strategy
  ansible.builtin.set_fact:
    migrate_plan: "{{ 'auto' | ferry.runc.migration_strategy(src_info.features, dst_info.features) }}"
"""

RETURN = r"""
_value:
  description: The strategy and why it was chosen.
  type: dict
  contains:
    strategy:
      description: One of V(stop-and-copy), V(pre-copy), V(post-copy).
      type: str
    why:
      description: The reason, for the migration report.
      type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.runc.plugins.module_utils._strategy import choose


def migration_strategy(requested, source_features, destination_features, source="source", destination="destination"):
    try:
        strategy, why = choose(requested, source_features, destination_features)
    except ValueError as exc:
        message = str(exc).replace("on the source", f"on the source {source}").replace("on the destination", f"on the destination {destination}")
        # Not chained: ansible-core appends a cause's message, which would repeat this one without the host names.
        raise AnsibleFilterError(message) from None
    return {"strategy": strategy, "why": why}


class FilterModule:
    def filters(self):
        return {"migration_strategy": migration_strategy}
