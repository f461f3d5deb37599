# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the runc/CRIU options a dump and its restore must share (_options.CRIU_OPTIONS;
tests/unit/plugins/module_utils/test_options.py holds the two equal)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  tcp_established:
    description: Checkpoint and restore established TCP connections (C(--tcp-established)); the same address must exist where the container is restored.
    type: bool
    default: false
  ext_unix_sk:
    description: Allow external UNIX sockets (C(--ext-unix-sk)).
    type: bool
    default: false
  shell_job:
    description: Allow a container that is a shell job, started from a terminal (C(--shell-job)).
    type: bool
    default: false
  file_locks:
    description: Checkpoint and restore file locks (C(--file-locks)).
    type: bool
    default: false
  manage_cgroups_mode:
    description: How CRIU handles the container's cgroups (C(--manage-cgroups-mode)); runc's default is V(soft).
    type: str
    choices: [soft, full, strict]
"""
