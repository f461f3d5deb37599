# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_costs
short_description: Add a migration's measured downtime terms to the costs learned between two hosts
version_added: 1.1.0
description:
  - Takes the costs learned from earlier migrations between the same two hosts (what the
    P(ferry.runc.migrate#role) role keeps on the controller next to its reports) and a new migration's
    P(ferry.runc.migration_report#filter) report, and returns the costs with that migration's measured frozen-window
    terms added - the final dump's fixed part, the memory write rate, the hand-over, the restore (and per MiB of the
    container's memory) and the release, in milliseconds.
  - Keeps the last 10 migrations; a migration recorded already is replaced, and one that did not migrate (or measured
    nothing) leaves the costs as they were.
  - Records only numbers, the migration's id, its strategy and its transport - never anything secret.
  - The result is what M(ferry.runc.migration_sender) takes as O(ferry.runc.migration_sender#module:learned_costs).
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description: The learned costs so far, V({}) when there are none.
    type: dict
    required: true
  report:
    description: The migration's report (P(ferry.runc.migration_report#filter)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Learn from this migration
  ansible.builtin.set_fact:
    costs: "{{ costs | ferry.runc.migration_costs(report) }}"
"""

RETURN = r"""
_value:
  description: The learned costs.
  type: dict
  contains:
    source:
      description: The source host.
      type: str
    destination:
      description: The destination host.
      type: str
    migrations:
      description:
        - One entry per migration, the newest last - C(migration_id), C(strategy), C(transport) (the sender's,
          V(shared) or V(page-server)), C(final_dump_fixed_ms), C(write_ms_per_mib), C(hand_over_ms), C(restore_ms),
          C(restore_ms_per_mib) and C(release_ms); a rate the migration could not measure is V(null).
      type: list
      elements: dict
"""

from ansible_collections.ferry.runc.plugins.module_utils._downtime import learn


def migration_costs(learned_costs, report):
    return learn(learned_costs or {}, report)


class FilterModule:
    def filters(self):
        return {"migration_costs": migration_costs}
