#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runc_info
short_description: Report what a host offers for checkpoint, restore and migration of runc containers
version_added: 1.0.0
description:
  - Reports the versions of runc and CRIU, the result of C(criu check), the CRIU features that decide the migration
    strategy, the cgroup version and the containers runc knows; given O(container_id), that container's state.
  - With O(details), O(dump_cpu_image), O(check_cpu_image) and O(check_paths), also what placing its containers on
    other hosts needs; the CPU image lives in a temporary directory under C(/run) only while the module runs.
  - Changes nothing.
  - The features are C(criu check --feature) probes. C(mem_dirty_track) allows pre-copy (pre-dumps),
    C(uffd) and C(uffd_noncoop) allow post-copy (lazy pages); CRIU locks the container's network during a dump,
    by default with C(iptables-restore) (C(network_lock_iptables)), or with nftables when C(network_lock_nftables).
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._runc
attributes:
  check_mode:
    support: full
    details: Runs the same read-only commands in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  container_id:
    description: A container to report on (RV(container)).
    type: str
  read_host:
    description:
      - Whether to read the host - RV(runc_version), RV(criu_version), RV(criu_check), RV(features) and
        RV(cgroup_version). V(false) reads only the containers, for a caller that read the host earlier in the same
        run (the migrate role when the playbook C(ferry.runc.evacuate) read every host before its migrations).
    type: bool
    default: true
    version_added: 1.1.0
  details:
    description:
      - Whether each running or paused container in RV(containers) also gets what a placement needs - why it could
        not move, its memory, the host paths it binds and its annotations - and the host its available memory
        (RV(memory_available_bytes)). The playbook C(ferry.runc.evacuate) reads the host to empty this way.
    type: bool
    version_added: 1.1.0
    default: false
  dump_cpu_image:
    description:
      - Whether to return this host's CPU features as C(criu cpuinfo dump) writes them (RV(cpu_image)), for
        O(check_cpu_image) on another host.
    type: bool
    version_added: 1.1.0
    default: false
  check_cpu_image:
    description:
      - Another host's RV(cpu_image); this host's CPU is checked against it with C(criu cpuinfo check)
        (RV(cpu_check)) - whether processes of that host would find every CPU feature they may use here.
    type: str
    version_added: 1.1.0
  check_paths:
    description: Host paths whose absence here RV(missing_paths) reports, for example another host's bind-mount sources.
    type: list
    version_added: 1.1.0
    elements: path
    default: []
seealso:
  - module: ferry.runc.runc_checkpoint
  - module: ferry.runc.runc_restore
"""

EXAMPLES = r"""
- name: Read what the hosts offer
  ferry.runc.runc_info:
  register: hosts_info

- name: Require pre-copy support everywhere
  ansible.builtin.assert:
    that:
      - hosts_info.criu_check.passed
      - hosts_info.features.mem_dirty_track
    fail_msg: "{{ inventory_hostname }}: CRIU cannot pre-dump here ({{ hosts_info.criu_check.output }})"

- name: Read a container's state, pid and bundle from another runc state directory
  ferry.runc.runc_info:
    container_id: web1
    root: /run/ferry-runc
    runc_path: /usr/local/sbin/runc
    criu_path: /usr/local/sbin/criu
  register: web1_info

- name: Show where web1 runs from
  ansible.builtin.debug:
    msg: "{{ web1_info.container.status }} as pid {{ web1_info.container.pid }} from {{ web1_info.container.bundle }}"
  when: web1_info.container is not none
"""

RETURN = r"""
runc_version:
  description: runc's version, from C(runc --version).
  returned: unless O(read_host) is false
  type: str
  sample: 1.1.5+ds1
criu_version:
  description: CRIU's version, from C(criu --version).
  returned: unless O(read_host) is false
  type: str
  sample: 3.17.1
criu_check:
  description: The result of C(criu check).
  returned: unless O(read_host) is false
  type: dict
  contains:
    passed:
      description: Whether C(criu check) exited with 0.
      type: bool
    output:
      description: What it printed.
      type: str
  sample: {"passed": true, "output": "Looks good."}
features:
  description: Which CRIU features the host supports.
  returned: unless O(read_host) is false
  type: dict
  contains:
    mem_dirty_track:
      description: Soft-dirty memory tracking, needed for pre-dumps (pre-copy).
      type: bool
    uffd:
      description: userfaultfd, needed for lazy pages (post-copy).
      type: bool
    uffd_noncoop:
      description: userfaultfd's non-cooperative events, needed for lazy pages of processes that fork or remap.
      type: bool
    network_lock_iptables:
      description: C(iptables-restore) is installed, which CRIU's default network lock needs.
      type: bool
    network_lock_nftables:
      description: CRIU can lock the network with nftables.
      type: bool
  sample: {"mem_dirty_track": true, "uffd": true, "uffd_noncoop": true, "network_lock_iptables": true, "network_lock_nftables": true}
cgroup_version:
  description: V(2) on the unified cgroup hierarchy, V(1) otherwise.
  returned: unless O(read_host) is false
  type: int
  sample: 2
containers:
  description: C(runc list) under O(root), one C(runc state) per container.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "web1", "pid": 1829, "status": "running", "bundle": "/srv/bundles/web1", "created": "2026-11-25T22:37:01.722697285Z"}]
  contains:
    problems:
      description: With O(details), why the container could not survive a live migration as it runs (as RV(container_problems)).
      type: list
      elements: str
    memory_bytes:
      description: With O(details), its memory as RV(container_memory_bytes) gives it.
      type: int
    bind_sources:
      description: With O(details), the host paths its C(config.json) binds into it.
      type: list
      elements: str
    annotations:
      description: With O(details), the annotations of its C(config.json).
      type: dict
memory_available_bytes:
  description: The memory new work can use on this host without swapping (C(MemAvailable) of C(/proc/meminfo)); null when the kernel does not say.
  returned: when O(details) is true
  type: int
cpu_image:
  description: This host's C(cpuinfo.img) from C(criu cpuinfo dump), base64-encoded.
  returned: when O(dump_cpu_image) is true
  type: str
cpu_check:
  description: C(criu cpuinfo check) of O(check_cpu_image) against this host's CPU.
  returned: when O(check_cpu_image) is given
  type: dict
  contains:
    passed:
      description: Whether this CPU has every feature of the other host's.
      type: bool
    output:
      description: What C(criu cpuinfo check) printed.
      type: str
missing_paths:
  description: The paths of O(check_paths) that do not exist on this host.
  returned: when O(check_paths) is not empty
  type: list
  elements: str
container:
  description: C(runc state) of O(container_id), null when runc knows no such container.
  returned: when O(container_id) is given
  type: dict
  contains:
    id:
      description: The container's id.
      type: str
    status:
      description: V(created), V(running), V(paused) or V(stopped).
      type: str
    pid:
      description: Host pid of the container's init process (0 once stopped).
      type: int
    bundle:
      description: The container's bundle directory.
      type: str
    rootfs:
      description: The container's root file system.
      type: str
    created:
      description: When runc created (or restored) the container.
      type: str
  sample: {"id": "web1", "pid": 1829, "status": "running", "bundle": "/srv/bundles/web1", "rootfs": "/srv/bundles/web1/rootfs",
           "created": "2026-11-25T22:37:01.722697285Z", "ociVersion": "1.0.2-dev", "owner": ""}
container_problems:
  description:
    - Why O(container_id) could not survive a live migration as it runs, one sentence each (empty when it could) -
      stdio on a pipe, a socket or a terminal, whose other end would stay on this host.
  returned: when O(container_id) is given and the container exists
  type: list
  elements: str
container_memory_bytes:
  description:
    - The memory of O(container_id) that a dump writes, from its cgroup (C(anon) + C(shmem) of C(memory.stat),
      cgroup v2); null when it does not run or the host does not say. The migrate role's plan scales its predicted
      downtime with it.
  returned: when O(container_id) is given and the container exists
  type: int
migration:
  description:
    - The newest migration of O(container_id) that this host took part in and still holds a record of (under
      C(/run/ferry-runc)), null when there is none - what M(ferry.runc.migration_status) would report for it.
  returned: when O(container_id) is given
  type: dict
  contains:
    migration_id:
      description: The migration's ID.
      type: str
    side:
      description: V(sender) or V(receiver).
      type: str
    phase:
      description: Its agent's last recorded phase.
      type: str
    finished:
      description: Whether its agent has ended.
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils import _runc, _runc_work
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _runc.COMMON_ARGUMENT_SPEC,
            container_id={"type": "str"},
            read_host={"type": "bool", "default": True},
            details={"type": "bool", "default": False},
            dump_cpu_image={"type": "bool", "default": False},
            check_cpu_image={"type": "str"},
            check_paths={"type": "list", "elements": "path", "default": []},
        ),
        supports_check_mode=True,
    )
    try:
        result = _runc_work.info(module)
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
