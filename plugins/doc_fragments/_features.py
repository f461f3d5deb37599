# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the two hosts' CRIU features, which the strategy filters decide from."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  source_features:
    description: The source's CRIU features, as reported by M(ferry.runc.runc_info) (RV(ferry.runc.runc_info#module:features)).
    type: dict
    required: true
  destination_features:
    description: The destination's CRIU features.
    type: dict
    required: true
"""
