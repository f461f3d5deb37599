# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_plan
short_description: A migration's plan before anything is frozen - its strategy and each strategy's predicted downtime
version_added: 1.1.0
description:
  - Takes the strategy P(ferry.runc.migration_strategy#filter) chose and predicts, for it and for every other strategy
    both hosts support, the downtime from the costs learned between the two hosts (P(ferry.runc.migration_costs#filter))
    and the container's memory, term by term.
  - A strategy whose terms no earlier migration measured gets no prediction, or a lower bound without those terms;
    pre-copy's dirty pages are only known after its first round. When every strategy is predicted over the budget, the
    plan says so.
  - This is what the P(ferry.runc.migrate#role) role shows before it moves a container, and all that
    C(ansible-playbook ferry.runc.migrate --check) does.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._features
options:
  _input:
    description: The chosen strategy and why, as P(ferry.runc.migration_strategy#filter) returns them.
    type: dict
    required: true
  transport:
    description: The role's transport, V(nfs) or V(page-server).
    type: str
    required: true
  learned_costs:
    description: The costs learned between the two hosts, V({}) when there are none.
    type: dict
    required: true
  memory_bytes:
    description: The container's memory (RV(ferry.runc.runc_info#module:container_memory_bytes)), null when unknown.
    type: int
    required: true
  budget_ms:
    description: The downtime budget in milliseconds.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Plan the migration
  ansible.builtin.set_fact:
    plan: >-
      {{ chosen | ferry.runc.migration_plan(src_info.features, dst_info.features, 'nfs', costs,
         src_info.container_memory_bytes, 1000) }}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    strategy:
      description: The chosen strategy.
      type: str
    why:
      description: Why it was chosen.
      type: str
    budget_ms:
      description: The downtime budget.
      type: int
    predictions:
      description:
        - Per supported strategy, its prediction - C(terms_ms), C(total_ms) (null without any term), C(largest_term)
          and C(unpredicted) (the terms no earlier migration measured).
      type: dict
    lines:
      description: The plan in words, one line per strategy, the chosen one first.
      type: list
      elements: str
"""

from ansible_collections.ferry.runc.plugins.module_utils._downtime import plan
from ansible_collections.ferry.runc.plugins.module_utils._strategy import supported


def migration_plan(chosen, source_features, destination_features, transport, learned_costs, memory_bytes, budget_ms):
    allowed = supported(source_features, destination_features, transport)
    return plan(chosen["strategy"], chosen["why"], allowed, transport, learned_costs or {}, memory_bytes, budget_ms)


class FilterModule:
    def filters(self):
        return {"migration_plan": migration_plan}
