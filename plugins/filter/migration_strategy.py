# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_strategy
short_description: Choose a live migration's strategy from what the two hosts support
version_added: 1.0.0
description:
  - Resolves V(auto) to V(pre-copy) when the source tracks dirty memory, else V(post-copy) when the destination
    has userfaultfd, else V(stop-and-copy); checks an explicitly requested strategy against the same features and
    the transport (V(hybrid) needs V(nfs)).
  - With V(auto) it also lists the C(candidates) among which the sender chooses by the downtime model after pre-copy's
    first round.
  - Fails with a message naming the host and the missing feature.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._features
options:
  _input:
    description: The requested strategy.
    type: str
    required: true
  transport:
    description: The migration's transport, V(nfs) or V(page-server).
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
    migrate_plan: "{{ 'auto' | ferry.runc.migration_strategy(src_info.features, dst_info.features, 'nfs') }}"
"""

RETURN = r"""
_value:
  description: The strategy and why it was chosen.
  type: dict
  contains:
    strategy:
      description: One of V(stop-and-copy), V(pre-copy), V(post-copy), V(hybrid).
      type: str
    why:
      description: The reason, for the migration report.
      type: str
    candidates:
      description:
        - With V(auto), when the source tracks dirty memory and more than one strategy is supported - every supported
          strategy, among which the sender chooses by the downtime model after its first pre-dump round (see
          M(ferry.runc.migration_sender)); the strategy above is where it starts. Otherwise V([]).
      type: list
      elements: str
    streams_pages:
      description:
        - Whether CRIU may send memory pages over the network (the page-server transport, or lazy pages with
          V(post-copy) and V(hybrid), also as one of the candidates), which then needs TLS.
      type: bool
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.runc.plugins.module_utils._strategy import candidates, choose, streams_pages


def migration_strategy(requested, source_features, destination_features, transport, source="source", destination="destination"):
    try:
        strategy, why = choose(requested, source_features, destination_features, transport)
    except ValueError as exc:
        message = str(exc).replace("on the source", f"on the source {source}").replace("on the destination", f"on the destination {destination}")
        # Not chained: ansible-core appends a cause's message, which would repeat this one without the host names.
        raise AnsibleFilterError(message) from None
    others = candidates(requested, source_features, destination_features, transport)
    return {"strategy": strategy, "why": why, "candidates": others,
            "streams_pages": streams_pages(transport, [strategy, *others])}


class FilterModule:
    def filters(self):
        return {"migration_strategy": migration_strategy}
