# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: evacuate_plan
short_description: Where each running container of a host goes when the host is emptied, and why the others stay
version_added: 1.1.0
description:
  - Takes the source's RV(ferry.runc.runc_info#module:containers) read with O(ferry.runc.runc_info#module:details)
    and each destination's reading (with the source's CPU image and bind-mount sources) and places each selected
    running container.
  - A container's mode is its entry in O(request.modes), else its C(ferry.runc.evacuate) annotation, else
    O(request.mode) - V(live-migrate), V(stop) (stopped on the source) or V(skip) (left running there).
  - A destination can take a container when it could be read, C(criu check) passes there, its CPU has every feature
    of the source's (C(criu cpuinfo check)), no container of that ID exists there, every bind-mount source exists
    there, it supports the strategy, and its available memory, less what the containers placed before took, holds
    the container's memory plus O(request.memory_margin_mib). Containers are placed largest first, each on the
    compatible destination with the most memory left (the first in name order on a tie).
  - A container that cannot move (its stdio, see RV(ferry.runc.runc_info#module:container_problems)) or that no
    destination can take stays running on the source, with the reasons.
  - This is what the playbook C(ferry.runc.evacuate) prints and then carries out.
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description: The source host's P(ferry.runc.runc_info#module) result, read with O(ferry.runc.runc_info#module:details).
    type: dict
    required: true
  source:
    description: The source host's name.
    type: str
    required: true
  destinations:
    description:
      - Per destination host, its P(ferry.runc.runc_info#module) result read with
        O(ferry.runc.runc_info#module:check_cpu_image) and O(ferry.runc.runc_info#module:check_paths), or a failed
        result (C(failed) or C(unreachable) and C(msg)) for a host that could not be read.
    type: dict
    required: true
  request:
    description: The selection and the policy.
    type: dict
    required: true
    suboptions:
      ids:
        description: Container IDs to move; with O(request.pattern) and O(request.annotation) empty too, every running container.
        type: list
        elements: str
        required: true
      pattern:
        description: A shell-style pattern (C(web-*)) of container IDs to move, or V("").
        type: str
        required: true
      annotation:
        description: C(KEY) or C(KEY=VALUE) of the containers' annotations to move, or V("").
        type: str
        required: true
      mode:
        description: The mode of a container that neither O(request.modes) nor an annotation gives one.
        type: str
        required: true
      modes:
        description: Modes by container ID.
        type: dict
        required: true
      memory_margin_mib:
        description: The memory a destination must have available beyond the container's own, in MiB.
        type: int
        required: true
      strategy:
        description: The requested strategy (V(auto) or one of P(ferry.runc.migration_strategy#filter)'s).
        type: str
        required: true
      transport:
        description: The transport, V(nfs) or V(page-server).
        type: str
        required: true
      budget_ms:
        description: The downtime budget in milliseconds.
        type: int
        required: true
      learned_costs:
        description: Per destination host, the costs learned from the source to it (P(ferry.runc.migration_costs#filter)).
        type: dict
        required: true
"""

EXAMPLES = r"""
- name: Plan the evacuation of src
  ansible.builtin.set_fact:
    evacuation: >-
      {{ src_info | ferry.runc.evacuate_plan('src', {'dst1': dst1_info, 'dst2': dst2_info},
         {'ids': [], 'pattern': '', 'annotation': '', 'mode': 'live-migrate', 'modes': {'db': 'stop'},
          'memory_margin_mib': 256, 'strategy': 'auto', 'transport': 'nfs', 'budget_ms': 1000, 'learned_costs': {}}) }}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    entries:
      description:
        - One per selected running container, in the order placed - C(container), C(mode), C(mode_from) (where the
          mode came from), C(memory_bytes), C(action) (V(live-migrate), V(stop), V(skip) or V(stay)),
          C(source), C(destination), C(strategy), C(why), C(predicted_downtime_ms), C(prediction) (in words), C(parallel)
          (false for a migration whose page stream needs TLS, which runs alone) and C(reasons) (why it stays).
      type: list
      elements: dict
    lines:
      description: The plan in words, one line per container.
      type: list
      elements: str
"""

from ansible_collections.ferry.runc.plugins.module_utils._placement import place


def evacuate_plan(source_info, source, destinations, request):
    return place(source, source_info, destinations, request)


class FilterModule:
    def filters(self):
        return {"evacuate_plan": evacuate_plan}
