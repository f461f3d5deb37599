# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: evacuate_summary
short_description: An evacuation's (or a return's) outcome per container, and its origin record
version_added: 1.1.0
description:
  - Takes the plan's entries (P(ferry.runc.evacuate_plan#filter) or P(ferry.runc.evacuate_return_plan#filter)) and
    what each migration left (the migrate role's report) and gives each container's outcome - the report's
    (V(migrated), V(rolled back) - it runs on the host it was to leave -, V(in doubt), ...), V(already there) (it ran
    on the destination only before), V(failed) (the migration did not get as far as a report, so nothing moved),
    V(stopped), V(skipped) or V(stayed) - with its destination, strategy, downtime, error and the reasons it stayed.
  - Keeps the origin record, which the return reads - an evacuation adds each container it moved with the host it
    came from, a return drops each one it brought back.
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description: The plan's entries.
    type: list
    elements: dict
    required: true
  results:
    description:
      - By container ID, what its migration left - C(report) (the migrate role's report, null when it did not get that
        far), C(error) (the failed task's message), C(already_there) (it already ran on the destination only) and
        C(started) (when the migrate role started, epoch seconds).
    type: dict
    required: true
  stopped:
    description: By container ID, how each container whose mode is V(stop) ended.
    type: dict
    required: true
  origin_record:
    description: The origin record so far, V({}) when there is none.
    type: dict
    required: true
  returning:
    description: Whether this run is the return.
    type: bool
    required: true
"""

EXAMPLES = r"""
- name: Sum up the evacuation
  ansible.builtin.set_fact:
    evacuation_summary: "{{ evacuate_plan.entries | ferry.runc.evacuate_summary(results, {}, {'source': 'src', 'containers': {}}, false) }}"
"""

RETURN = r"""
_value:
  description: The summary.
  type: dict
  contains:
    entries:
      description:
        - Per container - C(container), C(action), C(source), C(destination), C(strategy), C(parallel), C(outcome),
          C(downtime_ms), C(predicted_downtime_ms), C(migration_id), C(reasons), C(error), C(started) and C(seconds)
          (the migration's, from its report).
      type: list
      elements: dict
    lines:
      description: The summary in words, one line per container.
      type: list
      elements: str
    failed:
      description: The containers whose migration did not end with the container on its destination.
      type: list
      elements: str
    origin_record:
      description: The origin record after this run.
      type: dict
"""

from ansible_collections.ferry.runc.plugins.module_utils._placement import summarize


def evacuate_summary(entries, results, stopped, origin_record, returning):
    return summarize(entries, results, stopped, origin_record, returning)


class FilterModule:
    def filters(self):
        return {"evacuate_summary": evacuate_summary}
