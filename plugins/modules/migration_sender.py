#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_sender
short_description: Run the source side of a live migration of a runc container
version_added: 1.0.0
description:
  - Connects to a M(ferry.runc.migration_receiver) on the destination and moves a running runc container there,
    in one call on the source host, without any round trip to the Ansible controller while the container is frozen.
  - With O(strategy=pre-copy) it first copies memory while the container runs, in rounds of
    C(runc checkpoint --pre-dump), each with the previous round as parent, until the convergence rule stops
    (see O(downtime_budget_ms), O(min_shrink), O(max_rounds)).
  - It then freezes the container (C(runc pause)) and takes the final dump with C(--leave-running), so the frozen
    container stays on the source while the receiver restores its copy. When the receiver reports that the copy
    runs, the source copy is deleted. When anything fails after the freeze, the receiver drops its copy and the
    source copy is resumed from the moment it was frozen; the images are kept.
  - With O(strategy=post-copy) the final dump leaves memory on the source (C(--lazy-pages)); the destination runs
    at once and fetches pages from the source's CRIU on demand. The source copy stays frozen until the last page
    has arrived, so a failed transfer still resumes the source (what the destination did in the meantime is lost).
  - The result is the migration's report, with each round, the frozen time, the bytes moved, the restore time and the
    downtime from the freeze until the destination's copy ran, measured on the source's clock.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._criu_tls
attributes:
  check_mode:
    support: none
    details: A migration cannot be predicted without running it; use M(ferry.runc.runc_info) to check both hosts first.
  diff_mode:
    support: none
options:
  container:
    description: ID of the running container to migrate.
    type: str
    required: true
  image_dir:
    description:
      - Directory on the source for this migration's images (C(pre1), C(pre2), ..., C(final)).
      - It must not exist yet, so that everything in it belongs to this migration; it is created root-only (0700).
      - With O(transport=shared) the receiver sees the same directory (an NFS share), which it checks.
    type: path
    required: true
  strategy:
    description: How memory moves. C(auto) is resolved by the caller (the P(ferry.runc.migrate#role) role) before.
    type: str
    choices: [stop-and-copy, pre-copy, post-copy]
    required: true
  transport:
    description:
      - V(shared) writes every image into O(image_dir), which the receiver reads through shared storage.
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
  secret:
    description: Secret shared with the receiver; authenticates every message of the control channel.
    type: str
    required: true
  lazy_address:
    description: Address of this host where the destination fetches pages from, with O(strategy=post-copy).
    type: str
  lazy_port:
    description: TCP port of the source's page server with O(strategy=post-copy).
    type: int
    default: 27102
  downtime_budget_ms:
    description: Pre-copy stops once the predicted frozen time of the final dump is at most this many milliseconds.
    type: int
    default: 1000
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
      - Keep the images of a successful migration; by default this module removes its image directory and the
        receiver its own once the destination's copy runs. After a failure the images are always kept.
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for the receiver to listen.
    type: int
    default: 120
  dump_timeout:
    description: Seconds to wait for the lazy dump's images and for the last page of a post-copy transfer.
    type: int
    default: 1800
  tcp_established:
    description: Checkpoint established TCP connections (runc C(--tcp-established)).
    type: bool
    default: false
  file_locks:
    description: Checkpoint file locks (runc C(--file-locks)).
    type: bool
    default: false
  ext_unix_sk:
    description: Allow external unix sockets (runc C(--ext-unix-sk)).
    type: bool
    default: false
  shell_job:
    description: Allow a shell job (runc C(--shell-job)).
    type: bool
    default: false
  manage_cgroups_mode:
    description: CRIU's cgroup handling (runc C(--manage-cgroups-mode)); the runc default when unset.
    type: str
    choices: [soft, full, strict, ignore]
  tls_cacert:
    description:
      - CA certificate for TLS on CRIU's page stream (PEM text), with O(tls_cert) and O(tls_key); without them pages travel
        in clear text.
      - runc passes no TLS options to CRIU, so for the migration's duration this module adds them to runc's CRIU
        configuration file C(/etc/criu/runc.conf) (after what is there already) and takes them out again at the end.
      - CRIU checks the peer's certificate against the address of the page server (the receiver's, or this host's
        with post-copy) on both ends, so one certificate whose subjectAltName holds both addresses serves both hosts.
    type: str
  root:
    description: runc's state directory (runc C(--root)); runc's default when unset.
    type: path
  runc_path:
    description: Path of the runc binary; found in E(PATH) when unset.
    type: path
  criu_path:
    description: Path of the criu binary given to runc (runc C(--criu)); runc's default when unset.
    type: path
notes:
  - Run M(ferry.runc.migration_receiver) on the destination first, in the background (C(async) with C(poll=0)).
  - Before anything is frozen, the receiver checks that the container ID is free there, that the bundle is the same,
    that its CPU has every feature of the source's (C(criu cpuinfo check)) and, with shared storage, that it sees
    this host's image directory. A failure there removes the directories this migration created and changes nothing.
  - The pre-copy convergence rule, in order - keep going below O(min_rounds); stop when the predicted frozen time
    is within O(downtime_budget_ms) (the last round's frozen time plus the time to move the pages it wrote at the
    measured write rate, and with shared storage the destination's measured read rate); stop when a round did not
    write at least O(min_shrink) fewer pages than the one before; stop at O(max_rounds).
  - With O(tcp_established), the source's connections are unlocked after the final dump while the source copy stays
    frozen, so packets that arrive in that window are acknowledged by the source kernel; move the address only after
    the migration.
seealso:
  - module: ferry.runc.migration_receiver
  - module: ferry.runc.runc_checkpoint
"""

EXAMPLES = r"""
- name: Migrate web1 with iterative pre-copy over the NFS share
  ferry.runc.migration_sender:
    container: web1
    image_dir: /srv/ferry-runc/images/web1-20261125
    strategy: pre-copy
    receiver_address: 10.99.0.2
    secret: "{{ migration_secret }}"
    downtime_budget_ms: 500
  register: migration

- name: Post-copy with pages served by the source, images over the control channel
  ferry.runc.migration_sender:
    container: web1
    image_dir: /var/lib/ferry-runc/images/web1
    strategy: post-copy
    transport: page-server
    bundle_sync: copy
    receiver_address: 10.99.0.2
    lazy_address: 10.99.0.1
    secret: "{{ migration_secret }}"
"""

RETURN = r"""
report:
  description: What happened and where the time went.
  returned: always
  type: dict
  contains:
    strategy:
      description: The strategy used.
      type: str
      sample: pre-copy
    rounds:
      description: Each pre-copy round with CRIU's counts and the measured times.
      type: list
      elements: dict
      sample: [{"round": 1, "pages_written": 262144, "bytes_written": 1073741824, "seconds": 21.3, "frozen_ms": 180.2}]
    stop_reason:
      description: Why pre-copy stopped.
      type: str
      sample: "converged: predicted frozen time 420 ms is within the budget of 1000 ms"
    final:
      description: The final dump's counts and times.
      type: dict
    restore:
      description: The receiver's restore time and CRIU's restore statistics.
      type: dict
    downtime_ms:
      description: From the freeze on the source until the receiver reported its copy running.
      type: int
      sample: 2400
    total_seconds:
      description: From the start of this module to its end.
      type: float
    rolled_back:
      description: Whether the container was resumed on the source after a failure.
      type: bool
    recovery:
      description: After a failure, where the container runs and what was done.
      type: str
"""

import signal

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils._channel import ChannelError
from ansible_collections.ferry.runc.plugins.module_utils._sender import MigrationFailed, Sender


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "image_dir": {"type": "path", "required": True},
            "strategy": {"type": "str", "required": True, "choices": ["stop-and-copy", "pre-copy", "post-copy"]},
            "transport": {"type": "str", "default": "shared", "choices": ["shared", "page-server"]},
            "bundle_sync": {"type": "str", "default": "shared", "choices": ["shared", "copy"]},
            "receiver_address": {"type": "str", "required": True},
            "receiver_port": {"type": "int", "default": 27100},
            "secret": {"type": "str", "required": True, "no_log": True},
            "lazy_address": {"type": "str"},
            "lazy_port": {"type": "int", "default": 27102},
            "downtime_budget_ms": {"type": "int", "default": 1000},
            "min_shrink": {"type": "float", "default": 0.25},
            "max_rounds": {"type": "int", "default": 8},
            "min_rounds": {"type": "int", "default": 1},
            "keep_images": {"type": "bool", "default": False},
            "connect_timeout": {"type": "int", "default": 120},
            "dump_timeout": {"type": "int", "default": 1800},
            "tcp_established": {"type": "bool", "default": False},
            "file_locks": {"type": "bool", "default": False},
            "ext_unix_sk": {"type": "bool", "default": False},
            "shell_job": {"type": "bool", "default": False},
            "manage_cgroups_mode": {"type": "str", "choices": ["soft", "full", "strict", "ignore"]},
            "tls_cacert": {"type": "str"},
            "tls_cert": {"type": "str"},
            "tls_key": {"type": "str", "no_log": True},
            "root": {"type": "path"},
            "runc_path": {"type": "path"},
            "criu_path": {"type": "path"},
        },
        required_if=[("strategy", "post-copy", ["lazy_address"])],
        required_together=[("tls_cacert", "tls_cert", "tls_key")],
        supports_check_mode=False,
    )
    runc_path = module.params["runc_path"] or module.get_bin_path("runc", required=True)
    # If the controller goes away, finish the migration (or the rollback) anyway: stopping half-way could leave the
    # container frozen.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sender = Sender(module, module.params, runc_path)
    try:
        report = sender.run()
    except (MigrationFailed, ChannelError, OSError) as exc:
        step, cause = (exc.step, exc.cause) if isinstance(exc, MigrationFailed) else (sender.step, str(exc))
        recovery = sender.report.get("recovery", "")
        log = getattr(exc, "log", [])
        quoted = " CRIU log: " + " | ".join(log[-8:]).rstrip(".") + "." if log else ""
        outcome = f" {recovery[:1].upper()}{recovery[1:]}." if recovery else ""
        module.fail_json(
            msg=f"{step} failed: {cause}.{quoted}{outcome}",
            criu_log=log,
            report=sender.report,
            changed=sender.frozen_at is not None,
        )
    module.exit_json(changed=True, report=report)


if __name__ == "__main__":
    main()
