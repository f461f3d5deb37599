# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the options that say which runc and CRIU to use and where runc keeps its state."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  root:
    description:
      - runc's state directory, passed as the global C(--root) option of every runc command.
      - Must be the one the container was started with (C(runc --root ...)); runc's own default is V(/run/runc).
    type: path
    default: /run/runc
  runc_path:
    description:
      - Path of the runc binary.
      - By default the C(runc) found on the target's E(PATH).
    type: path
  criu_path:
    description:
      - Path of the CRIU binary, passed to runc as its global C(--criu) option.
      - By default the C(criu) found on the target's E(PATH).
    type: path
requirements:
  - runc 1.1 or later and CRIU 3.17 or later on the target, run as root.
"""
