# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_report
short_description: Build a live migration's report from the sender's, receiver's and controller's views
version_added: 1.0.0
description:
  - Joins the sender agent's report, the receiver agent's result (both from M(ferry.runc.migration_status)) and the times
    the controller saw into one report - strategy and why, each pre-dump round, the frozen time, the downtime, the
    restore time, the bytes moved and the total time, split so that the parts add up to the totals.
  - Adds C(summary), the same as a few readable lines.
author: ferry.runc contributors (@ferry-runc)
options:
  _input:
    description:
      - What was decided before the migration - C(migration_id), C(container), C(source), C(destination),
        C(strategy), C(strategy_reason), C(transport), C(bundle_sync).
    type: dict
    required: true
  sender:
    description: The sender's RV(ferry.runc.migration_status#module:result).
    type: dict
    required: true
  receiver:
    description: The receiver's result.
    type: dict
    required: true
  controller:
    description: Epoch seconds on the controller - C(started), C(sender_started), C(sender_ended), C(ended).
    type: dict
    required: true
  settled:
    description:
      - When the controller had to settle the migration, the P(ferry.runc.migration_resolution#filter) decision it
        carried out; its C(outcome) is then the report's.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Build the report
  ansible.builtin.set_fact:
    report: "{{ plan | ferry.runc.migration_report(sender.result, receiver.result, times) }}"
"""

RETURN = r"""
_value:
  description: The report (see the collection's docs/report.md for every field), with C(summary) lines.
  type: dict
"""

from ansible_collections.ferry.runc.plugins.module_utils._report import build, summary


def migration_report(plan, sender, receiver, controller, settled=None):
    report = build(plan, sender, receiver, controller, settled or {})
    report["summary"] = summary(report)
    return report


class FilterModule:
    def filters(self):
        return {"migration_report": migration_report}
