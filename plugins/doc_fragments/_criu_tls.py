# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private documentation fragment: the certificate and key of TLS on CRIU's page stream, shared by both agents."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  tls_cert:
    description: Certificate for TLS on CRIU's page stream (PEM text), signed by O(tls_cacert).
    type: str
  tls_key:
    description:
      - Private key of O(tls_cert) (PEM text); never logged.
      - CRIU reads the three from files, so for the module's duration they are written to a new root-only directory
        under C(/run) (a tmpfs) and removed when it ends.
    type: str
"""
