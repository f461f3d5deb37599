#!/usr/bin/python
# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nfs_export
short_description: Manage one NFS export in its own file under /etc/exports.d
version_added: 1.0.0
description:
  - Exports one directory (O(path)) over NFS to a list of clients with one list of options, or removes that export.
  - The export lives in a file of its own, C(/etc/exports.d/ferry-runc.<path>.<hash>.exports), which starts with a
    header saying the module manages it. The module never edits C(/etc/exports) or any other file, so the host's other
    exports survive; it refuses to overwrite a file of that name that lacks its header.
  - Clients and options are validated before anything changes. A client that matches every host (V(*), a wildcard
    made of V(*) and dots, V(0.0.0.0/0), V(::/0)) is refused unless O(allow_world=true).
  - Only when the managed file changes does the module re-export, and only the entries that changed, with
    C(exportfs -u CLIENT:PATH) for the clients that went and C(exportfs -o OPTIONS CLIENT:PATH) for the new or changed
    ones (IPv6 clients in brackets). Other exports of the host are not touched, not even re-read into the kernel.
  - The module decides from its managed file only. It does not read the kernel's export table, so an entry removed by
    hand with C(exportfs -u) comes back with C(exportfs -r) or a restart of the NFS server, not with this module.
  - When another export file also exports O(path), the module warns, as those entries keep applying.
author: ferry.runc contributors (@ferry-runc)
extends_documentation_fragment:
  - ferry.runc._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff is the text of the managed file before and after.
  platform:
    platforms: linux
requirements:
  - C(exportfs) from the NFS server package (C(nfs-kernel-server) on Debian) on the target, when something changes.
options:
  path:
    description:
      - The directory to export. An absolute, normalized path without symbolic links (exportfs exports the resolved
        path, so the module would not find its entries again).
    type: path
    required: true
  clients:
    description:
      - The hosts allowed to mount O(path), each as exports(5) spells it. Required with O(state=present).
      - A host name (V(dst.example.org)), an IPv4 or IPv6 address (V(10.99.0.2), V(2001:db8::2)), an IPv4 or IPv6
        network (V(10.99.0.0/24), V(10.99.0.0/255.255.255.0), V(2001:db8::/64); no host bits set), an NIS netgroup
        (V(@migration)) or a wildcard pattern (V(node*.example.org), V(node[0-9].example.org)).
      - Addresses and networks are written in their canonical form (V(10.99.0.0/255.255.255.0) becomes V(10.99.0.0/24)).
      - A client matching every host needs O(allow_world=true).
    type: list
    elements: str
  options:
    description:
      - The export options of every client, in the given order, as listed in exports(5).
      - "Known options: V(rw), V(ro), V(sync), V(async), V(secure), V(insecure), V(wdelay), V(no_wdelay), V(hide),
        V(nohide), V(crossmnt), V(nocrossmnt), V(subtree_check), V(no_subtree_check), V(root_squash),
        V(no_root_squash), V(all_squash), V(no_all_squash), V(secure_locks), V(insecure_locks), V(auth_nlm),
        V(no_auth_nlm), V(mountpoint), V(mp), V(nordirplus), V(pnfs), V(no_pnfs), V(security_label), V(acl),
        V(no_acl), and with a value V(anonuid=N), V(anongid=N), V(fsid=root|N|UUID), V(sec=FLAVOR[:FLAVOR]) (sys, krb5,
        krb5i, krb5p), V(mountpoint=/PATH), V(mp=/PATH), V(refer=PATH@HOST), V(replicas=PATH@HOST)."
      - Each option may appear once, and contradicting ones (V(rw) and V(ro), V(sync) and V(async), V(root_squash) and
        V(no_root_squash), ...) are refused.
      - The default is exportfs' own safe behaviour spelled out. CRIU and runc need V(rw) and V(no_root_squash) on a
        migration directory; see the collection's C(docs/nfs.md).
    type: list
    elements: str
    default: [ro, sync, no_subtree_check, root_squash]
  state:
    description:
      - V(present) writes the managed file and exports O(path) to O(clients).
      - V(absent) removes the managed file and unexports every client it held. O(path) itself is never removed.
    type: str
    choices: [present, absent]
    default: present
  allow_world:
    description:
      - Allow a client that matches every host (V(*), V(0.0.0.0/0), V(::/0), a pattern such as V(*.*)).
    type: bool
    default: false
  create:
    description:
      - Create O(path) (and missing parents) when it does not exist. The new directory gets mode V(0700) unless
        O(mode) says otherwise. Without it, a missing O(path) is an error.
    type: bool
    default: false
  owner:
    description:
      - The owner of O(path), set when given (whether or not the module created the directory).
    type: str
  group:
    description:
      - The group of O(path), set when given.
    type: str
  mode:
    description:
      - The mode of O(path), set when given, as for M(ansible.builtin.file) (quote octal modes, for example V('0700')).
    type: raw
notes:
  - Only directories are exported; O(path) is never deleted, also not with O(state=absent).
seealso:
  - name: exports(5)
    description: The format of the export files and the meaning of every option.
    link: https://man7.org/linux/man-pages/man5/exports.5.html
  - name: exportfs(8)
    description: The command the module runs to apply a change.
    link: https://man7.org/linux/man-pages/man8/exportfs.8.html
"""

EXAMPLES = r"""
- name: Share the migration directory with the destination host only (CRIU and runc run as root on both ends)
  ferry.runc.nfs_export:
    path: /srv/ferry-runc
    clients: [10.99.0.2]
    options: [rw, sync, no_subtree_check, no_root_squash]
    create: true
    owner: root
    group: root
    mode: "0700"

- name: Read-only to a subnet and a netgroup, squashing everyone to one account
  ferry.runc.nfs_export:
    path: /srv/images
    clients: [192.0.2.0/24, 2001:db8::/64, "@builders"]
    options: [ro, sync, no_subtree_check, all_squash, anonuid=65534, anongid=65534]

- name: A public read-only export must say so
  ferry.runc.nfs_export:
    path: /srv/pub
    clients: ["*"]
    options: [ro, sync, no_subtree_check, all_squash, insecure]
    allow_world: true

- name: Stop exporting the migration directory (its contents stay)
  ferry.runc.nfs_export:
    path: /srv/ferry-runc
    state: absent
"""

RETURN = r"""
file:
  description: The managed export file of O(path).
  returned: always
  type: str
  sample: /etc/exports.d/ferry-runc.srv_ferry-runc.5d2f3c1a.exports
commands:
  description:
    - The exportfs commands run to apply the change, in order; in check mode the ones that would run.
    - Empty when the managed file already held the asked state.
  returned: always
  type: list
  elements: list
  sample: [["/usr/sbin/exportfs", "-o", "rw,sync,no_subtree_check,no_root_squash", "10.99.0.2:/srv/ferry-runc"]]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError
from ansible_collections.ferry.runc.plugins.module_utils._exports import apply


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "clients": {"type": "list", "elements": "str"},
            "options": {"type": "list", "elements": "str", "default": ["ro", "sync", "no_subtree_check", "root_squash"]},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "allow_world": {"type": "bool", "default": False},
            "create": {"type": "bool", "default": False},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "raw"},
        },
        required_if=[("state", "present", ["clients"])],
        supports_check_mode=True,
    )
    try:
        result = apply(module, module.params)
    except FerryError as error:
        module.fail_json(**error.at(f"nfs_export of {module.params['path']}").result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
