#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_status
short_description: Await an agent of a live migration and report where it is
version_added: 1.1.0
description:
  - Reads the status of the sender or receiver agent of a migration on this host (started by
    M(ferry.runc.migration_sender) or M(ferry.runc.migration_receiver)) and returns as soon as the agent records
    something new (a phase, a pre-copy round, its end) or after O(wait) seconds, whichever comes first. Call it in a
    loop to follow a migration; RV(progress) is what to show.
  - An agent that died without recording its end (killed, or its host's OOM killer) counts as finished, with
    RV(died); its last phase says what it left. A sender that died while its guardian still runs has not finished
    yet; the guardian records its end (the container resumed on the source, or frozen after the commit) within about
    a second, and that is what this module then returns.
  - Also returns the runc status of the container on this host, which M(ferry.runc.migration_resolve) and the
    P(ferry.runc.migration_resolution#filter) filter decide on.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
attributes:
  check_mode:
    support: full
    details: It only reads.
  diff_mode:
    support: none
options:
  migration_id:
    description: The migration, as given to the agent.
    type: str
    required: true
  side:
    description: Which agent.
    type: str
    choices: [sender, receiver]
    required: true
  container:
    description: The container being migrated, for RV(container_status).
    type: str
    required: true
  wait:
    description: Seconds to wait for the agent to record something new before returning anyway.
    type: int
    default: 10
  progress_since:
    description: Return in RV(progress_log) only the progress recorded after the one with this index (V(0) for all).
    type: int
    default: 0
  root:
    description: runc's state directory (runc C(--root)); runc's default when unset.
    type: path
  runc_path:
    description: Path of the runc binary; found in E(PATH) when unset.
    type: path
seealso:
  - module: ferry.runc.migration_sender
  - module: ferry.runc.migration_receiver
  - module: ferry.runc.migration_resolve
"""

EXAMPLES = r"""
- name: Wait for the sender's end, showing nothing in between
  ferry.runc.migration_status:
    migration_id: web1-20261201
    side: sender
    container: web1
    wait: 30
  register: sender
  until: sender.finished
  retries: 120
  delay: 0
"""

RETURN = r"""
found:
  description: Whether the agent has written its status yet.
  returned: always
  type: bool
finished:
  description: Whether the agent has ended (on its own or not).
  returned: always
  type: bool
died:
  description: Whether the agent ended without recording its end (its guardian may have recorded it).
  returned: always
  type: bool
phase:
  description: The agent's phase (see the protocol in the collection's docs/design.md).
  returned: always
  type: str
  sample: pre-copy
progress:
  description:
    - What the agent does now - C(step), and numbers such as C(pages_written) and C(predicted_downtime_ms).
    - The sender's C(over_budget), from just before the freeze on, says that its predicted downtime is over its
      O(ferry.runc.migration_sender#module:downtime_budget_ms) (the migration goes on).
  returned: always
  type: dict
progress_log:
  description:
    - Every progress the sender recorded after the one numbered O(progress_since), oldest first, each like RV(progress)
      with its C(index) (1, 2, ...); what a follower that polls less often than the agent moves shows, so that no
      pre-copy round goes unseen. The receiver records none.
  returned: always
  type: list
  elements: dict
result:
  description: When finished, the agent's result; the sender's is the migration's report.
  returned: always
  type: dict
history:
  description: Each phase the agent went through, with its time (epoch seconds).
  returned: when found
  type: list
  elements: dict
container_status:
  description: runc's status of the container on this host - V(running), V(paused), ..., or V(absent).
  returned: always
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
            "container": {"type": "str", "required": True},
            "wait": {"type": "int", "default": 10},
            "progress_since": {"type": "int", "default": 0},
            "root": {"type": "path"},
            "runc_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    try:
        result = _settle.agent_status(module)
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
