# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: evacuate_return_plan
short_description: The return after an evacuation - each container it moved, from where it runs back to its origin
version_added: 1.1.0
description:
  - Takes the origin record that the playbook C(ferry.runc.evacuate) keeps on the controller
    (C(<migrate_report_dir>/evacuate-<source>-origin.json)) and plans one migration per container it names, from the
    host it was moved to back to its origin, in the same form as P(ferry.runc.evacuate_plan#filter).
  - The record names only containers that an evacuation moved and no return has brought back yet.
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description: The origin record - C(source) and C(containers), by ID each C(container), C(origin), C(destination) and C(parallel).
    type: dict
    required: true
  strategy:
    description: The requested strategy; each migration resolves V(auto) for its two hosts.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the return to src
  ansible.builtin.set_fact:
    evacuation: "{{ lookup('ansible.builtin.file', 'ferry-reports/evacuate-src-origin.json') | from_json | ferry.runc.evacuate_return_plan('auto') }}"
"""

RETURN = r"""
_value:
  description: The plan, as P(ferry.runc.evacuate_plan#filter) gives it (C(entries) and C(lines)).
  type: dict
"""

from ansible_collections.ferry.runc.plugins.module_utils._placement import returns


def evacuate_return_plan(origin_record, strategy):
    return returns(origin_record, strategy)


class FilterModule:
    def filters(self):
        return {"evacuate_return_plan": evacuate_return_plan}
