# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_resolution
short_description: Decide which copy of a migrated container is the container, from what both hosts show
version_added: 1.1.0
description:
  - Applies the migration protocol's resolution rule to the sender's last recorded phase, the source's runc status,
    the receiver's last recorded phase and the destination's runc status (all from M(ferry.runc.migration_status)).
  - A held destination copy never ran, so it yields to a source copy that was not committed; once the migration
    was committed the destination's copy wins; the source's copy is resumed only while it still is the container.
    When the rule cannot tell (committed, but the destination has no copy), it decides nothing and says why.
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description: The sender's phase (RV(ferry.runc.migration_status#module:phase)), or V(null) when no sender ran.
    type: str
    required: true
  source_status:
    description: The container's runc status on the source (RV(ferry.runc.migration_status#module:container_status)).
    type: str
    required: true
  receiver_phase:
    description: The receiver's phase, or V(null) when no receiver ran.
    type: str
    required: true
  destination_status:
    description: The container's runc status on the destination.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Decide
  ansible.builtin.set_fact:
    resolution: "{{ sender.phase | ferry.runc.migration_resolution(sender.container_status, receiver.phase, receiver.container_status) }}"
"""

RETURN = r"""
_value:
  description: The decision.
  type: dict
  contains:
    outcome:
      description: V(migrated), V(rolled back), V(in doubt), V(two copies) or V(lost).
      type: str
    why:
      description: The reason, for the report.
      type: str
    source_action:
      description: V(none), V(resume) or V(delete) (M(ferry.runc.migration_resolve) on the source).
      type: str
    destination_action:
      description: V(none), V(release) or V(delete) (M(ferry.runc.migration_resolve) on the destination).
      type: str
"""

from dataclasses import asdict

from ansible_collections.ferry.runc.plugins.module_utils._protocol import resolve


def migration_resolution(sender_phase, source_status, receiver_phase, destination_status):
    return asdict(resolve(sender_phase or None, source_status, receiver_phase or None, destination_status))


class FilterModule:
    def filters(self):
        return {"migration_resolution": migration_resolution}
