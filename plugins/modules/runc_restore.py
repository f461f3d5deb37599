#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runc_restore
short_description: Restore a runc container from CRIU images
version_added: 1.0.0
description:
  - Runs C(runc restore) to bring a container back from the images of a full dump (M(ferry.runc.runc_checkpoint)),
    on the host that made them or on another one that sees the same images and bundle.
  - Validates everything before it changes anything. A failure names the step and quotes the lines of CRIU's log
    (C(restore.log) in the work path) that explain it. Nothing is deleted on failure.
  - B(Idempotence.) After a restore, the module records the new container in a small file in the work path,
    C(ferry-restore-<container_id>.json), with the container's id, the resolved O(image_path), and the init pid and
    creation time that C(runc state) reports. runc gives every container it starts a new creation time, and the
    pid cannot be reused while the container runs, so when a container with that id runs (or is paused) and matches
    the record, this very restore already happened and the task reports V(changed=false). Any other container with
    that id (one started otherwise, restored from other images, or stopped) is an error.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._runc
  - ferry.runc._criu_options
attributes:
  check_mode:
    support: full
    details: Validates the bundle, the images and the options, and predicts V(changed) from the existing container.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  container_id:
    description: The id the restored container gets; it may differ from the id it had when it was checkpointed.
    type: str
    required: true
  bundle:
    description:
      - The container's OCI bundle directory (with C(config.json) and the root file system it had at the checkpoint).
    type: path
    required: true
  image_path:
    description: Directory with the images of a full dump (a pre-dump alone cannot be restored).
    type: path
    required: true
  work_path:
    description:
      - Directory for CRIU's log (C(restore.log)), statistics (C(stats-restore)) and this module's restore record;
        created when missing.
      - Defaults to O(image_path), as with CRIU itself.
      - With O(lazy_pages), it must be the directory of the C(criu lazy-pages) daemon (its C(lazy-pages.socket)).
    type: path
  detach:
    description:
      - Detach from the restored container (C(--detach)), which is what a migration needs.
      - With V(false) the task waits until the container exits, and records nothing.
    type: bool
    default: true
  pid_file:
    description: File that runc writes the restored container's init pid into (C(--pid-file)); its directory must exist.
    type: path
  lazy_pages:
    description:
      - Post-copy (C(--lazy-pages)). Restore without the memory pages, which a C(criu lazy-pages) daemon fetches from
        the source's page server (M(ferry.runc.runc_checkpoint) with O(ferry.runc.runc_checkpoint#module:lazy_pages=true)).
      - The daemon must run already (C(criu lazy-pages --page-server --address SRC --port PORT -D WORK)), with
        O(work_path) as its directory.
    type: bool
    default: false
seealso:
  - module: ferry.runc.runc_checkpoint
  - module: ferry.runc.runc_info
  - name: runc restore
    description: The command this module runs.
    link: https://github.com/opencontainers/runc/blob/main/man/runc-restore.8.md
"""

EXAMPLES = r"""
- name: Restore the container from its final dump (a second run reports ok)
  ferry.runc.runc_restore:
    container_id: web1
    bundle: /srv/bundles/web1
    image_path: /srv/ckpt/web1/final
  register: web1_restore

- name: Show how long CRIU took
  ansible.builtin.debug:
    msg: "restored in {{ web1_restore.stats.restore_time / 1000 }} ms, now pid {{ web1_restore.state_after.pid }}"

- name: Restore from images on a share, keeping CRIU's log and the record on local disk, and write a pid file
  ferry.runc.runc_restore:
    container_id: web1
    bundle: /mnt/share/bundles/web1
    image_path: /mnt/share/ckpt/web1/final
    work_path: /var/lib/ferry/web1
    pid_file: /run/web1.pid

- name: Restore a container checkpointed with TCP connections, file locks and external UNIX sockets
  ferry.runc.runc_restore:
    container_id: db1
    bundle: /srv/bundles/db1
    image_path: /srv/ckpt/db1
    tcp_established: true
    file_locks: true
    ext_unix_sk: true
    manage_cgroups_mode: full

- name: Restore a shell job in the foreground (the task returns when the container exits)
  ferry.runc.runc_restore:
    container_id: shell1
    bundle: /srv/bundles/shell1
    image_path: /srv/ckpt/shell1
    shell_job: true
    detach: false

- name: Post-copy (destination) - restore while criu lazy-pages fetches the pages from the source
  ferry.runc.runc_restore:
    container_id: web1
    bundle: /srv/bundles/web1
    image_path: /srv/ckpt/web1/lazy
    lazy_pages: true

- name: Use another runc state directory and self-built binaries
  ferry.runc.runc_restore:
    container_id: web2
    bundle: /srv/bundles/web2
    image_path: /srv/ckpt/web2
    root: /run/ferry-runc
    runc_path: /usr/local/sbin/runc
    criu_path: /usr/local/sbin/criu
"""

RETURN = r"""
container_id:
  description: The container's id.
  returned: always
  type: str
  sample: web1
image_path:
  description: The image directory restored from.
  returned: always
  type: str
  sample: /srv/ckpt/web1/final
work_path:
  description: CRIU's work directory, where C(restore.log), C(stats-restore) and the restore record are.
  returned: always
  type: str
  sample: /srv/ckpt/web1/final
command:
  description: The runc command line (run, that would run in check mode, or that made the existing container).
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/runc, --root, /run/runc, --criu, /usr/bin/criu, restore, --image-path, /srv/ckpt/web1/final,
           --work-path, /srv/ckpt/web1/final, --bundle, /srv/bundles/web1, --detach, web1]
state_before:
  description: C(runc state) of a container with that id before the task (null when there was none).
  returned: always
  type: dict
  sample: null
state_after:
  description:
    - C(runc state) of the restored container (null when it already exited, as with O(detach=false)).
    - In check mode, the unchanged state.
  returned: success
  type: dict
  sample: {"id": "web1", "pid": 673, "status": "running", "bundle": "/srv/bundles/web1", "created": "2026-11-25T22:34:23.160458977Z"}
stats:
  description:
    - CRIU's statistics from C(stats-restore) in the work path (times in microseconds), null when CRIU wrote none.
    - With V(changed=false), those of the earlier restore that made the running container.
  returned: when this or an earlier run restored the container (not for a restore predicted in check mode)
  type: dict
  contains:
    pages_compared:
      description: Pages compared with the parent images.
      type: int
    pages_skipped_cow:
      description: Pages left shared copy-on-write.
      type: int
    forking_time:
      description: Time to fork the process tree.
      type: int
    restore_time:
      description: Time of the whole restore.
      type: int
    pages_restored:
      description: Pages restored (when CRIU records it).
      type: int
  sample: {"pages_compared": 9, "pages_skipped_cow": 2, "forking_time": 6868, "restore_time": 1712579, "pages_restored": 31}
criu_log_excerpt:
  description: On a failed restore, the lines of CRIU's log that explain it (also quoted in C(msg)).
  returned: failure of runc restore
  type: list
  elements: str
  sample: ["(01.124164)      1: Error (criu/files-reg.c:2259): Can't open file bin/busybox on restore: No such file or directory"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils import _options, _runc, _runc_work
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _runc.COMMON_ARGUMENT_SPEC,
            **_options.argument_spec(),
            container_id={"type": "str", "required": True},
            bundle={"type": "path", "required": True},
            image_path={"type": "path", "required": True},
            work_path={"type": "path"},
            detach={"type": "bool", "default": True},
            pid_file={"type": "path"},
            lazy_pages={"type": "bool", "default": False},
        ),
        supports_check_mode=True,
    )
    try:
        result = _runc_work.restore(module)
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
