#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_sender
short_description: Start the source side of a live migration of a runc container
version_added: 1.0.0
description:
  - Starts the sender agent of a migration on this host and returns at once; await it with
    M(ferry.runc.migration_status), whose result is the migration's report. The agent connects to the
    M(ferry.runc.migration_receiver) on the destination and moves the running container there, talking to the
    receiver directly, with no round trip to the Ansible controller while the container is frozen.
  - With O(strategy=pre-copy) (and O(strategy=hybrid)) it first copies memory while the container runs, in rounds of
    C(runc checkpoint --pre-dump), each with the previous round as parent, until the convergence rule stops
    (see O(downtime_budget_ms), O(min_shrink), O(max_rounds)).
  - It then freezes the container (C(runc pause)) and takes the final dump with C(--leave-running); the receiver
    restores it held, and only then does the sender commit the migration - recorded on this host (and on the shared
    directory with O(transport=shared)) before the receiver is told - after which the destination's copy runs and
    the source's is deleted. Before the commit any failure resumes the source's copy from the moment it was frozen
    and the held copy, which never ran, is deleted; after it nothing resumes the source. A guardian (a systemd unit
    of its own) resumes the container if the sender dies before the commit. The images are kept after any failure.
  - With O(strategy=post-copy) the final dump leaves memory on the source (C(--lazy-pages)), whose cgroup is then
    frozen again; the destination's copy runs from the commit on and fetches pages from the source's CRIU. If it
    cannot get them all it is deleted, and the source's copy stays frozen at the moment of the freeze (resuming it
    would undo what the destination's copy did); the report names the command that resumes it.
  - With O(strategy=hybrid) it runs the pre-copy rounds, then a final dump with C(--lazy-pages) on top of the last
    round (C(--parent-path)); the restore reads the pages that round holds from O(image_dir), and the destination's
    copy fetches only those dirtied since, as in post-copy. It needs O(transport=shared), because CRIU finds parent
    images only on the destination's disk.
  - The report gives each round, the frozen time, the bytes moved, the restore time and the downtime from the
    freeze until the destination's copy ran, measured on this host's clock, and every phase with its time; and the
    downtime predicted just before the freeze, term by term.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._agent
  - ferry.runc._criu_options
attributes:
  check_mode:
    support: partial
    details: Checks the request and the binaries and returns the unit it would start; starts nothing.
  diff_mode:
    support: none
options:
  image_dir:
    description:
      - Directory on this host for this migration's images (C(pre1), C(pre2), ..., C(final)).
      - It must not exist yet, so that everything in it belongs to this migration; it is created root-only (0700).
      - With O(transport=shared) the receiver sees the same directory (an NFS share), which it checks.
    type: path
    required: true
  strategy:
    description: How memory moves. C(auto) is resolved by the caller (the P(ferry.runc.migrate#role) role) before.
    type: str
    choices: [stop-and-copy, pre-copy, post-copy, hybrid]
    required: true
  candidates:
    description:
      - Strategies to choose among after the first pre-dump round (the P(ferry.runc.migrate#role) role's V(auto) gives
        every strategy both hosts support, see the filter P(ferry.runc.migration_strategy#filter)). O(strategy) must
        be V(pre-copy) then, and is where the migration starts.
      - After that round the sender predicts each candidate's downtime (see O(learned_costs)) and goes on with the
        shortest; within 5 % of it, with the one that keeps memory on the source for the shortest time after the
        restore (stop-and-copy, pre-copy, hybrid, post-copy). When an earlier migration between these hosts did not
        measure every term of each candidate the predictions cannot be compared, and pre-copy goes on. The report's
        C(strategy) is the strategy chosen, C(strategy_reason) why, C(strategy_predictions_ms) each candidate's
        prediction.
    type: list
    elements: str
    choices: [stop-and-copy, pre-copy, post-copy, hybrid]
    default: []
  transport:
    description:
      - V(shared) writes every image into O(image_dir), which the receiver reads through shared storage; the
        directory also carries the migration's decision record.
      - V(page-server) sends memory pages straight to a CRIU page server that the receiver starts for each dump,
        and the other (small) images over the control channel; no shared storage is needed for images.
    type: str
    choices: [shared, page-server]
    default: shared
  bundle_sync:
    description:
      - V(shared) when the bundle is at the same path on both hosts already (shared storage); the receiver checks
        that C(config.json) is identical.
      - V(copy) sends the bundle to the receiver while the container runs, then the files that changed once it is frozen.
    type: str
    choices: [shared, copy]
    default: shared
  receiver_address:
    description: Address of the receiver on the link between the hosts.
    type: str
    required: true
  receiver_port:
    description: TCP port of the receiver's control channel.
    type: int
    default: 27100
  lazy_address:
    description: Address of this host where the destination fetches pages from, with O(strategy=post-copy) or O(strategy=hybrid).
    type: str
  lazy_port:
    description:
      - TCP port of the source's page server with O(strategy=post-copy) or O(strategy=hybrid).
      - While the agent runs, an C(iptables) (C(ip6tables) for an IPv6 receiver) rule lets only O(receiver_address)
        reach it.
    type: int
    default: 27102
  downtime_budget_ms:
    description:
      - The downtime to aim at, in milliseconds. Pre-copy stops once the predicted downtime (the whole frozen window,
        see O(learned_costs)) is at most this.
      - A goal, not a condition - when the prediction just before the freeze is over it, the progress says so and the
        migration goes on; the report says whether it was met.
    type: int
    default: 1000
  learned_costs:
    description:
      - What earlier migrations between the same two hosts measured of their frozen windows, for the terms this
        migration cannot measure before its freeze (the final dump's fixed part without pre-dump rounds, the write
        rate, the hand-over, the restore, the release).
      - A dict whose C(migrations) lists, the newest last, one entry per migration with C(strategy), C(transport)
        (V(shared) or V(page-server)) and the measured C(final_dump_fixed_ms), C(write_ms_per_mib), C(hand_over_ms),
        C(restore_ms), C(restore_ms_per_mib) and C(release_ms); the model uses the median of the entries with this
        migration's O(strategy) and O(transport), and for the restore a fixed part plus a part per MiB fitted to
        them once their containers' sizes are at least twice apart.
      - The P(ferry.runc.migrate#role) role keeps them on the controller next to its reports and passes them here.
      - Empty, the prediction holds only what this migration measures, and the report says which terms it lacks.
    type: dict
    default: {}
  min_shrink:
    description: Pre-copy stops when a round writes less than this fraction fewer pages than the round before.
    type: float
    default: 0.25
  max_rounds:
    description: Pre-copy never runs more rounds than this.
    type: int
    default: 8
  min_rounds:
    description: Pre-copy always runs at least this many rounds.
    type: int
    default: 1
  keep_images:
    description:
      - Keep the images of a successful migration; by default the sender removes its image directory and the
        receiver its own once the destination's copy runs. After a failure the images are always kept.
    type: bool
    default: false
notes:
  - Start M(ferry.runc.migration_receiver) on the destination first.
  - The container must run detached with its stdio on C(/dev/null) or files in its bundle; a container whose stdio
    is a pipe or a terminal is refused before anything is frozen (what held the other end stays here).
  - The pre-copy convergence rule, in order - keep going below O(min_rounds); stop when the predicted downtime
    is within O(downtime_budget_ms) (the final dump's fixed part that O(learned_costs) hold, else the last round's
    frozen time, plus the time to move the pages that round wrote at the measured write rate, and with shared
    storage the destination's measured read rate, plus the hand-over, restore and release that O(learned_costs)
    hold); stop when the dirty pages are at most 10 % of that prediction (fixed
    costs left, which more rounds do not shorten); stop when a round did not write at least O(min_shrink) fewer pages
    than the one before; stop at O(max_rounds).
  - Hybrid's rounds shorten what the destination fetches after the restore, not the downtime (its final dump writes
    no memory), so past O(min_rounds) they stop only when a round writes no pages, shrinks by less than
    O(min_shrink), or at O(max_rounds).
  - The TLS certificate and key, when given, are added to runc's CRIU configuration file C(/etc/criu/runc.conf) in a
    section of this migration's, which is removed when the agent ends (or by the next agent, if it died).
seealso:
  - module: ferry.runc.migration_receiver
  - module: ferry.runc.migration_status
  - module: ferry.runc.runc_checkpoint
"""

EXAMPLES = r"""
- name: Start migrating web1 with iterative pre-copy over the NFS share
  ferry.runc.migration_sender:
    migration_id: web1-20261201
    container: web1
    image_dir: /srv/ferry-runc/images/web1-20261201
    strategy: pre-copy
    receiver_address: 10.99.0.2
    secret: "{{ migration_secret }}"
    downtime_budget_ms: 500

- name: Await it; the result is the migration's report
  ferry.runc.migration_status:
    migration_id: web1-20261201
    side: sender
    container: web1
  register: sender
  until: sender.finished
  retries: 360
  delay: 0
"""

RETURN = r"""
migration_id:
  description: The migration this agent belongs to.
  returned: always
  type: str
unit:
  description: The agent's systemd unit.
  returned: always
  type: str
  sample: ferry-web1-20261201-sender.service
status_path:
  description: The agent's status file, which M(ferry.runc.migration_status) reads.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils import _agent, _options, _strategy
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _agent.AGENT_ARGUMENT_SPEC,
            **_options.argument_spec(),
            strategy={"type": "str", "required": True, "choices": list(_strategy.STRATEGIES)},
            candidates={"type": "list", "elements": "str", "default": [], "choices": list(_strategy.STRATEGIES)},
            transport={"type": "str", "default": "shared", "choices": ["shared", "page-server"]},
            bundle_sync={"type": "str", "default": "shared", "choices": ["shared", "copy"]},
            receiver_address={"type": "str", "required": True},
            receiver_port={"type": "int", "default": 27100},
            lazy_address={"type": "str"},
            lazy_port={"type": "int", "default": 27102},
            downtime_budget_ms={"type": "int", "default": 1000},
            learned_costs={"type": "dict", "default": {}},
            min_shrink={"type": "float", "default": 0.25},
            max_rounds={"type": "int", "default": 8},
            min_rounds={"type": "int", "default": 1},
            keep_images={"type": "bool", "default": False},
        ),
        required_together=[("tls_cacert", "tls_cert", "tls_key")],
        supports_check_mode=True,
    )
    try:
        result = _agent.start(module, "sender")
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
