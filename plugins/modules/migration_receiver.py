#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_receiver
short_description: Run the destination side of a live migration of a runc container
version_added: 1.0.0
description:
  - Listens for one M(ferry.runc.migration_sender) on the link between the hosts, authenticates it with the shared
    O(secret), and serves its requests until the sender commits or rolls back the migration.
  - On the sender's requests it starts a CRIU page server for each dump (page-server transport), receives the
    non-memory images and the bundle over the control channel, reads and checks each finished pre-dump from shared
    storage while the container still runs on the source, and restores the container as soon as the final dump is
    complete, after checking the images against the sender's checksum manifest.
  - With post-copy it starts CRIU's lazy-pages daemon, restores at once, and reports when the last page has arrived.
    If the transfer fails, its broken copy is deleted so the source can resume.
  - A restored copy is only deleted on the sender's explicit rollback. If the connection is lost after a restore,
    the copy keeps running and the result says so.
  - Start it in the background (C(async) with C(poll=0)) before the sender, and collect its result with
    M(ansible.builtin.async_status).
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._criu_tls
attributes:
  check_mode:
    support: none
    details: It only acts on the sender's requests; there is nothing to predict.
  diff_mode:
    support: none
options:
  container:
    description: ID the container gets on this host; it must not exist here yet.
    type: str
    required: true
  bundle:
    description: The container's bundle on this host (shared with the source, or filled by the sender).
    type: path
    required: true
  image_dir:
    description:
      - This migration's image directory on this host. On shared storage it is the sender's; otherwise it is local,
        must not exist yet, and is removed after a successful migration unless the sender keeps its images.
    type: path
    required: true
  work_dir:
    description:
      - A new local directory for CRIU's restore logs and, with post-copy, a local copy of the images. It must not
        exist yet; it is removed after a successful migration unless the sender keeps its images.
    type: path
    required: true
  listen_address:
    description: Address to listen on; the page servers listen there too. Use the address of the link between the hosts.
    type: str
    required: true
  port:
    description: TCP port of the control channel.
    type: int
    default: 27100
  page_server_port:
    description: TCP port of the CRIU page servers started for the page-server transport.
    type: int
    default: 27101
  secret:
    description: Secret shared with the sender.
    type: str
    required: true
  verify_images:
    description: Check the final images against the sender's SHA-256 manifest before restoring.
    type: bool
    default: true
  connect_timeout:
    description: Seconds to wait for the sender to connect.
    type: int
    default: 600
  lazy_timeout:
    description: Seconds to wait for the last page of a post-copy transfer.
    type: int
    default: 1800
  tcp_established:
    description: Restore established TCP connections (runc C(--tcp-established)).
    type: bool
    default: false
  manage_cgroups_mode:
    description: CRIU's cgroup handling (runc C(--manage-cgroups-mode)); the runc default when unset.
    type: str
    choices: [soft, full, strict, ignore]
  tls_cacert:
    description:
      - CA certificate for TLS on CRIU's page stream (PEM text), with O(tls_cert) and O(tls_key); the page servers and the
        lazy-pages daemon this module starts then use C(--tls). Give the sender the same three.
    type: str
  root:
    description: runc's state directory (runc C(--root)); runc's default when unset.
    type: path
  runc_path:
    description: Path of the runc binary; found in E(PATH) when unset.
    type: path
  criu_path:
    description: Path of the criu binary; found in E(PATH) when unset.
    type: path
seealso:
  - module: ferry.runc.migration_sender
  - module: ferry.runc.runc_restore
"""

EXAMPLES = r"""
- name: Wait for the source and restore web1 here
  ferry.runc.migration_receiver:
    container: web1
    bundle: /srv/ferry-runc/bundles/web1
    image_dir: /srv/ferry-runc/images/web1-20261125
    work_dir: /var/lib/ferry-runc/work/web1-20261125
    listen_address: 10.99.0.2
    secret: "{{ migration_secret }}"
  async: 3600
  poll: 0
  register: receiver_job
"""

RETURN = r"""
outcome:
  description: How the migration ended here.
  returned: always
  type: str
  sample: committed
restore:
  description: Restore time and CRIU's restore statistics.
  returned: when a restore ran
  type: dict
requests:
  description: Each request served, with its duration.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils._channel import ChannelError
from ansible_collections.ferry.runc.plugins.module_utils._receiver import Receiver


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "bundle": {"type": "path", "required": True},
            "image_dir": {"type": "path", "required": True},
            "work_dir": {"type": "path", "required": True},
            "listen_address": {"type": "str", "required": True},
            "port": {"type": "int", "default": 27100},
            "page_server_port": {"type": "int", "default": 27101},
            "secret": {"type": "str", "required": True, "no_log": True},
            "verify_images": {"type": "bool", "default": True},
            "connect_timeout": {"type": "int", "default": 600},
            "lazy_timeout": {"type": "int", "default": 1800},
            "tcp_established": {"type": "bool", "default": False},
            "manage_cgroups_mode": {"type": "str", "choices": ["soft", "full", "strict", "ignore"]},
            "tls_cacert": {"type": "str"},
            "tls_cert": {"type": "str"},
            "tls_key": {"type": "str", "no_log": True},
            "root": {"type": "path"},
            "runc_path": {"type": "path"},
            "criu_path": {"type": "path"},
        },
        required_together=[("tls_cacert", "tls_cert", "tls_key")],
        supports_check_mode=False,
    )
    runc_path = module.params["runc_path"] or module.get_bin_path("runc", required=True)
    criu_path = module.params["criu_path"] or module.get_bin_path("criu", required=True)
    receiver = Receiver(module, module.params, runc_path, criu_path)
    try:
        listener = receiver.listen()
    except OSError as exc:
        module.fail_json(msg=f"listen on {module.params['listen_address']}:{module.params['port']} failed: {exc}")
    try:
        result = receiver.run(listener)
    except ChannelError as exc:
        module.fail_json(msg=f"receiving container {module.params['container']} failed: {exc}", **receiver.result)
    if result["outcome"] != "committed":
        module.fail_json(msg=f"migration of {module.params['container']} did not complete here: {result['outcome']}", **result)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
