# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the certificate and key of TLS on CRIU's page stream, shared by both agents."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  tls_cert:
    description: Certificate (PEM) for TLS on CRIU's page stream, signed by O(tls_cacert).
    type: path
  tls_key:
    description: Private key (PEM) of O(tls_cert).
    type: path
"""
