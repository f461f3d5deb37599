#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_receiver
short_description: Start the destination side of a live migration of a runc container
version_added: 1.0.0
description:
  - Starts the receiver agent of a migration on this host and returns at once. The agent listens for one
    M(ferry.runc.migration_sender) on the link between the hosts, authenticates it with the shared O(secret) and
    serves its requests until the migration ends; await it with M(ferry.runc.migration_status).
  - Before the source freezes anything, the agent checks that the container ID is free here, that the bundle is the
    same, that this CPU has every feature of the source's (C(criu cpuinfo check)), that the host paths the container
    binds exist here and, with shared storage, that it sees the source's image directory.
  - On the sender's requests it starts a CRIU page server for each dump (page-server transport), receives the
    non-memory images and the bundle over the control channel, reads and checks each pre-dump from shared storage
    while the container still runs on the source, and restores the final images after checking them against the
    sender's checksums (from shared storage it reads each image once, hashing it and copying it to its work
    directory, and restores from that copy).
  - The restore is held - every restored task stops before its first instruction - until the sender commits the
    migration; then the copy runs. If the sender rolls back instead, the held copy, which never ran, is deleted. If
    the agents lose each other in between, the copy stays held until the decision record on shared storage, a new
    connection from the sender or the controller (M(ferry.runc.migration_resolve)) settles it. A copy that ran is
    deleted only when post-copy could not bring it the rest of its memory.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._agent
attributes:
  check_mode:
    support: partial
    details: Checks the request and the binaries and returns the unit it would start; starts nothing.
  diff_mode:
    support: none
options:
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
    description:
      - TCP port of the CRIU page servers started for the page-server transport.
      - While the agent runs, an C(iptables) (C(ip6tables) for an IPv6 sender) rule lets only the sender's address
        reach it.
    type: int
    default: 27101
  verify_images:
    description:
      - Check the final images against the sender's digests (BLAKE2b) before the restored copy may run.
      - They are hashed as the restore reads them, from the share or the page-server directory, so that the images
        cross the link once; a difference deletes the held copy and the source resumes. V(false) leaves them
        unchecked (pre-dump rounds on shared storage are checked either way, while the container runs).
    type: bool
    default: true
seealso:
  - module: ferry.runc.migration_sender
  - module: ferry.runc.migration_status
  - module: ferry.runc.runc_restore
"""

EXAMPLES = r"""
- name: Start the receiver of web1 here
  ferry.runc.migration_receiver:
    migration_id: web1-20261201
    container: web1
    bundle: /srv/ferry-runc/bundles/web1
    image_dir: /srv/ferry-runc/images/web1-20261201
    work_dir: /var/lib/ferry-runc/work/web1-20261201
    listen_address: 10.99.0.2
    secret: "{{ migration_secret }}"
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
  sample: ferry-web1-20261201-receiver.service
status_path:
  description: The agent's status file, which M(ferry.runc.migration_status) reads.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils import _agent
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _agent.AGENT_ARGUMENT_SPEC,
            bundle={"type": "path", "required": True},
            work_dir={"type": "path", "required": True},
            listen_address={"type": "str", "required": True},
            port={"type": "int", "default": 27100},
            page_server_port={"type": "int", "default": 27101},
            verify_images={"type": "bool", "default": True},
        ),
        required_together=[("tls_cacert", "tls_cert", "tls_key")],
        supports_check_mode=True,
    )
    try:
        result = _agent.start(module, "receiver")
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
