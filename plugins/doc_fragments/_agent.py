# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the options both agents of a migration share (_agent.AGENT_ARGUMENT_SPEC)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  migration_id:
    description:
      - Names this migration on this host. The agent's code, its status file and (while it starts) its parameters
        live in C(/run/ferry-runc/MIGRATION_ID), a root-only directory on a tmpfs; its systemd unit is
        C(ferry-MIGRATION_ID-SIDE.service). It must not have run for this ID on this host before.
      - M(ferry.runc.migration_status) awaits the agent by this ID.
    type: str
    required: true
  container:
    description: ID of the container being migrated.
    type: str
    required: true
  secret:
    description: Secret shared by the two agents; it authenticates every message of their control channel and never crosses it.
    type: str
    required: true
  connect_timeout:
    description: Seconds to wait for the peer to connect (receiver) or to listen (sender).
    type: int
    default: 120
  timeout:
    description:
      - Seconds any single step may take (a dump, a restore, the post-copy transfer); the agent's unit is stopped
        600 seconds after that at the latest, which runs its recovery.
    type: int
    default: 3600
  link_timeout:
    description:
      - Seconds after which the other agent counts as lost when the link is silent (TCP keep-alive and
        C(TCP_USER_TIMEOUT) on the control channel). An outage shorter than this only delays the migration.
    type: int
    default: 20
  indoubt_timeout:
    description:
      - After the commit point, how long a side that lost the other keeps trying to settle the migration with it (a
        new connection, or the decision record on shared storage) before it stops in doubt, its copy frozen or held,
        for the controller to settle.
    type: int
    default: 120
  tls_cacert:
    description:
      - CA certificate for TLS on CRIU's page stream (PEM text), with O(tls_cert) and O(tls_key). Give both agents the
        same three; without them the page stream is not encrypted.
    type: str
  tls_cert:
    description: Certificate for TLS on CRIU's page stream (PEM text), signed by O(tls_cacert).
    type: str
  tls_key:
    description:
      - Private key of O(tls_cert) (PEM text); never logged.
      - CRIU reads the three from files, so while the agent runs they are in a new root-only directory under
        C(/run) (a tmpfs), removed when it ends.
    type: str
  page_stream_plaintext:
    description:
      - Let CRIU's page stream (the page-server transport, post-copy) go without TLS - unencrypted, and
        unauthenticated, so that anyone on the link can read the container's memory or, connecting first, feed the
        destination pages of their own. Without it a page stream needs O(tls_cacert), O(tls_cert) and O(tls_key).
      - Both agents must allow it; the report says when the pages went so.
    type: bool
    default: false
  root:
    description: runc's state directory (runc C(--root)); runc's default when unset.
    type: path
  runc_path:
    description: Path of the runc binary; found in E(PATH) when unset.
    type: path
  criu_path:
    description: Path of the criu binary; found in E(PATH) when unset.
    type: path
  agent_code:
    description:
      - The agent's program, set by the module's action plugin (ferry.runc.migration_agent); do not set it.
    type: str
notes:
  - The agent is a transient systemd unit (C(systemd-run), C(KillMode=process)); its output goes to the journal
    (C(journalctl -u ferry-MIGRATION_ID-SIDE)). The module returns as soon as it runs; await it with
    M(ferry.runc.migration_status). Needs systemd on the host.
"""
