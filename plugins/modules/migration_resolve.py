#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_resolve
short_description: Settle, on one host, a live migration whose agents lost each other
version_added: 1.1.0
description:
  - Carries out on this host one step of what the P(ferry.runc.migration_resolution#filter) filter decided from
    both hosts, after both agents have ended - V(resume) or V(delete) the source's frozen copy (sender's host),
    V(release) or V(delete) the destination's held copy (receiver's host) - and records it in the agent's status.
  - Each step first checks that what the decision rests on still holds, and refuses otherwise; nothing that
    would run a second copy is ever done - the source's copy is resumed only while the migration was not
    committed, deleted only once it was; the destination's copy is released or deleted only while it is the very
    copy this migration restored and held (never ran).
  - A step already done (the copy already runs, or is gone) changes nothing.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
attributes:
  check_mode:
    support: full
    details: Checks everything and reports whether it would change something.
  diff_mode:
    support: none
options:
  migration_id:
    description: The migration, as given to its agents.
    type: str
    required: true
  side:
    description: Which agent's host this is.
    type: str
    choices: [sender, receiver]
    required: true
  action:
    description:
      - V(resume) and V(delete) on the sender's host, V(release) and V(delete) on the receiver's.
    type: str
    choices: [resume, delete, release]
    required: true
  container:
    description: The container being migrated.
    type: str
    required: true
  root:
    description: runc's state directory (runc C(--root)); runc's default when unset.
    type: path
  runc_path:
    description: Path of the runc binary; found in E(PATH) when unset.
    type: path
seealso:
  - module: ferry.runc.migration_status
"""

EXAMPLES = r"""
- name: Release the copy the destination holds, as the resolution decided
  ferry.runc.migration_resolve:
    migration_id: web1-20261201
    side: receiver
    action: release
    container: web1
  when: resolution.destination_action == 'release'
"""

RETURN = r"""
phase_before:
  description: The agent's recorded phase before this step.
  returned: always
  type: str
phase_after:
  description: The phase recorded after it.
  returned: when changed and not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils import _settle
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "migration_id": {"type": "str", "required": True},
            "side": {"type": "str", "required": True, "choices": ["sender", "receiver"]},
            "action": {"type": "str", "required": True, "choices": ["resume", "delete", "release"]},
            "container": {"type": "str", "required": True},
            "root": {"type": "path"},
            "runc_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    try:
        result = _settle.resolve_step(module)
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
