#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runc_checkpoint
short_description: Checkpoint or pre-dump a running runc container with CRIU
version_added: 1.0.0
description:
  - Runs C(runc checkpoint) on a running or paused container and writes CRIU's images to O(image_path).
  - A full dump (the default) stops the container unless O(leave_running=true); a pre-dump (O(pre_dump=true)) copies
    its memory and leaves it running, so that a later dump with O(parent_path) only writes the pages changed since.
  - With O(lazy_pages=true) (post-copy), runc keeps serving the memory pages from O(page_server) until the destination
    has them all; the module starts it in the background, waits until CRIU reports the other images complete, and
    returns the background process in RV(lazy_checkpoint).
  - Validates everything before it changes anything. A failure names the step and quotes the lines of CRIU's log
    (C(dump.log) in the work path) that explain it. Nothing is deleted on failure.
  - The task always reports V(changed) (a checkpoint always writes new images); a second run of a full dump fails,
    because the container is gone then.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
  - ferry.runc._runc
  - ferry.runc._criu_options
attributes:
  check_mode:
    support: full
    details: Validates the container, the paths and the options, and returns the command it would run.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  container_id:
    description: The id of the runc container to checkpoint.
    type: str
    required: true
  image_path:
    description:
      - Directory for CRIU's images; created (mode V(0700)) when missing.
      - It must not already hold a dump or pre-dump (an C(inventory.img)) unless O(overwrite=true).
    type: path
    required: true
  work_path:
    description:
      - Directory for CRIU's log (C(dump.log)) and statistics (C(stats-dump)); created when missing.
      - Defaults to O(image_path), as with CRIU itself.
    type: path
  parent_path:
    description:
      - Images of an earlier pre-dump of the same container, B(relative to O(image_path)) (for example V(../pre1));
        pages unchanged since then are not written again (RV(stats.pages_skipped_parent)).
      - Must hold a dump or pre-dump.
    type: str
  pre_dump:
    description:
      - Only dump the memory and leave the container running (C(--pre-dump)). Needs CRIU's C(mem_dirty_track) feature
        (see M(ferry.runc.runc_info)).
    type: bool
    default: false
  leave_running:
    description: Leave the container running after a full dump (C(--leave-running)). A paused container stays paused.
    type: bool
    default: false
  page_server:
    description:
      - V(ADDRESS:PORT) of a page server (C(--page-server)).
      - Without O(lazy_pages), the memory pages go to a C(criu page-server) listening there instead of O(image_path).
      - With O(lazy_pages), CRIU listens there itself and serves the pages to the destination's C(criu lazy-pages).
    type: str
  lazy_pages:
    description:
      - Post-copy (C(--lazy-pages --status-fd 3)). Needs O(page_server) and CRIU's C(uffd) feature, and cannot be
        combined with O(pre_dump).
      - runc is started detached (own session, all stdio redirected to C(runc-lazy-checkpoint.log) in the work path);
        the module returns once CRIU has written the non-memory images, with the background runc in
        RV(lazy_checkpoint). runc exits once the destination has every page; its end of C(dump.log) then reads
        C(Dumping finished successfully).
    type: bool
    default: false
  lazy_pages_timeout:
    description: With O(lazy_pages), how many seconds to wait for CRIU to report the non-memory images complete.
    type: int
    default: 300
  auto_dedup:
    description: Punch holes in the parent images for the pages this dump writes again (C(--auto-dedup)).
    type: bool
    default: false
  empty_ns:
    description: Namespaces to create empty on restore instead of restoring their properties (C(--empty-ns)).
    type: list
    elements: str
    choices: [network]
  overwrite:
    description:
      - Replace a dump or pre-dump that O(image_path) already holds. The files and symbolic links directly in
        O(image_path) (images, logs, the C(parent) link) are removed before the dump; subdirectories are kept.
    type: bool
    default: false
seealso:
  - module: ferry.runc.runc_restore
  - module: ferry.runc.runc_info
  - name: runc checkpoint
    description: The command this module runs.
    link: https://github.com/opencontainers/runc/blob/main/man/runc-checkpoint.8.md
"""

EXAMPLES = r"""
- name: Pre-dump the container's memory while it keeps running
  ferry.runc.runc_checkpoint:
    container_id: web1
    image_path: /srv/ckpt/web1/pre1
    pre_dump: true

- name: Dump it, writing only the pages changed since the pre-dump, with the logs kept apart
  ferry.runc.runc_checkpoint:
    container_id: web1
    image_path: /srv/ckpt/web1/final
    work_path: /var/log/ferry/web1
    parent_path: ../pre1
  register: web1_dump

- name: Show how many pages the pre-dump saved
  ansible.builtin.debug:
    msg: "{{ web1_dump.stats.pages_skipped_parent }} of {{ web1_dump.stats.pages_scanned }} pages skipped"

- name: Snapshot a container that has TCP connections, file locks and external UNIX sockets, and keep it running
  ferry.runc.runc_checkpoint:
    container_id: db1
    image_path: /srv/ckpt/db1
    leave_running: true
    tcp_established: true
    file_locks: true
    ext_unix_sk: true
    overwrite: true

- name: Dump a container started from a terminal, with its cgroups fully restored and a fresh network namespace
  ferry.runc.runc_checkpoint:
    container_id: shell1
    image_path: /srv/ckpt/shell1
    shell_job: true
    manage_cgroups_mode: full
    empty_ns: [network]

- name: Send the pages of a pre-dump to a page server on the destination, deduplicating earlier images
  ferry.runc.runc_checkpoint:
    container_id: web1
    image_path: /srv/ckpt/web1/pre2
    parent_path: ../pre1
    pre_dump: true
    page_server: 10.99.0.2:27000
    auto_dedup: true

- name: Post-copy, step 1 (source) - write the non-memory images and serve the pages in the background
  ferry.runc.runc_checkpoint:
    container_id: web1
    image_path: /srv/ckpt/web1/lazy
    lazy_pages: true
    page_server: 10.99.0.1:27000
    lazy_pages_timeout: 600
  register: web1_lazy

- name: Post-copy, last step (source) - wait until every page is served and the background runc has exited
  ansible.builtin.wait_for:
    path: "/proc/{{ web1_lazy.lazy_checkpoint.pid }}"
    state: absent
    timeout: 1800

- name: Use another runc state directory and self-built binaries
  ferry.runc.runc_checkpoint:
    container_id: web2
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
  description: The image directory.
  returned: always
  type: str
  sample: /srv/ckpt/web1/final
work_path:
  description: CRIU's work directory, where C(dump.log) and C(stats-dump) are.
  returned: always
  type: str
  sample: /srv/ckpt/web1/final
command:
  description: The runc command line (run, or that would run in check mode).
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/runc, --root, /run/runc, --criu, /usr/bin/criu, checkpoint, --image-path, /srv/ckpt/web1/final,
           --work-path, /srv/ckpt/web1/final, --parent-path, ../pre1, web1]
state_before:
  description: C(runc state) of the container before the checkpoint (null when runc knows no such container).
  returned: always
  type: dict
  sample: {"id": "web1", "pid": 553, "status": "running", "bundle": "/srv/bundles/web1", "created": "2026-11-25T22:34:11.567621914Z"}
state_after:
  description:
    - C(runc state) after the checkpoint; null after a full dump without O(leave_running) (runc removes the container).
    - In check mode, the unchanged state.
  returned: always
  type: dict
  sample: null
image_size:
  description: Size in bytes of the files in O(image_path) after the checkpoint (the images of a dump with O(parent_path) hold only the changed pages).
  returned: success and not check mode
  type: int
  sample: 253952
removed:
  description: Names of the files O(overwrite=true) removed from O(image_path) before the dump.
  returned: when O(overwrite=true) and O(image_path) existed, not in check mode
  type: list
  elements: str
  sample: [dump.log, inventory.img, pages-1.img, parent, stats-dump]
stats:
  description:
    - CRIU's statistics from C(stats-dump) in the work path (times in microseconds), null when CRIU wrote none.
    - Not returned with O(lazy_pages) (CRIU writes them once the last page is served).
  returned: success, not check mode, not O(lazy_pages)
  type: dict
  contains:
    freezing_time:
      description: Time to freeze the container's processes.
      type: int
    frozen_time:
      description: Time the processes stayed frozen.
      type: int
    memdump_time:
      description: Time to collect the memory pages.
      type: int
    memwrite_time:
      description: Time to write the memory pages.
      type: int
    pages_scanned:
      description: Memory pages scanned.
      type: int
    pages_skipped_parent:
      description: Pages not written because the parent images (O(parent_path)) already hold them unchanged.
      type: int
    pages_written:
      description: Pages written to the images or sent to the page server.
      type: int
    pages_lazy:
      description: Pages left to be served lazily.
      type: int
    irmap_resolve:
      description: Time to resolve inotify watch paths (when CRIU records it).
      type: int
    page_pipes:
      description: Kernel pipes used to move the pages (when CRIU records it).
      type: int
    page_pipe_bufs:
      description: Page pipe buffers used (when CRIU records it).
      type: int
    shpages_scanned:
      description: Shared memory pages scanned (when CRIU records it).
      type: int
    shpages_skipped_parent:
      description: Shared memory pages skipped thanks to the parent (when CRIU records it).
      type: int
    shpages_written:
      description: Shared memory pages written (when CRIU records it).
      type: int
  sample: {"freezing_time": 24383, "frozen_time": 2185234, "memdump_time": 30435, "memwrite_time": 5092,
           "pages_scanned": 1130, "pages_skipped_parent": 9, "pages_written": 24, "pages_lazy": 0}
lazy_checkpoint:
  description: With O(lazy_pages), the runc checkpoint that keeps serving pages in the background.
  returned: success with O(lazy_pages), not in check mode
  type: dict
  contains:
    pid:
      description: Process id of the background C(runc checkpoint); it exits once every page is served.
      type: int
    runc_log:
      description: File that receives runc's output.
      type: str
    criu_log:
      description: CRIU's C(dump.log); it ends with C(Dumping finished successfully) when all went well.
      type: str
  sample: {"pid": 1737, "runc_log": "/srv/ckpt/web1/lazy/runc-lazy-checkpoint.log", "criu_log": "/srv/ckpt/web1/lazy/dump.log"}
criu_log_excerpt:
  description: On a failed checkpoint, the lines of CRIU's log that explain it (also quoted in C(msg)).
  returned: failure of runc checkpoint
  type: list
  elements: str
  sample: ["(00.376216) Error (criu/files-reg.c:1710): Can't lookup mount=27 for fd=1 path=/tmp/x/t2.out"]
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
            image_path={"type": "path", "required": True},
            work_path={"type": "path"},
            parent_path={"type": "str"},
            pre_dump={"type": "bool", "default": False},
            leave_running={"type": "bool", "default": False},
            page_server={"type": "str"},
            lazy_pages={"type": "bool", "default": False},
            lazy_pages_timeout={"type": "int", "default": 300},
            auto_dedup={"type": "bool", "default": False},
            empty_ns={"type": "list", "elements": "str", "choices": _runc.EMPTY_NAMESPACES},
            overwrite={"type": "bool", "default": False},
        ),
        required_if=[("lazy_pages", True, ("page_server",))],
        supports_check_mode=True,
    )
    try:
        result = _runc_work.checkpoint(module)
    except FerryError as error:
        module.fail_json(**error.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
