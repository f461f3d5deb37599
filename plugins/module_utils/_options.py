# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one definition of the runc/CRIU options that a dump and its restore must share.

runc_checkpoint, runc_restore and migration_sender take them as module options (argument spec from here, docs from
the ferry.runc._criu_options fragment, which a unit test holds equal to this table); the sender passes the values
it dumped with to the receiver, which restores with the same, so the two sides cannot disagree.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

MANAGE_CGROUPS_MODES = ("soft", "full", "strict")


class CriuOption(NamedTuple):
    name: str
    flag: str
    choices: tuple = ()

    @property
    def is_switch(self) -> bool:
        return not self.choices


CRIU_OPTIONS = (
    CriuOption("tcp_established", "--tcp-established"),
    CriuOption("ext_unix_sk", "--ext-unix-sk"),
    CriuOption("shell_job", "--shell-job"),
    CriuOption("file_locks", "--file-locks"),
    CriuOption("manage_cgroups_mode", "--manage-cgroups-mode", MANAGE_CGROUPS_MODES),
)
NAMES = tuple(option.name for option in CRIU_OPTIONS)


def argument_spec() -> dict[str, dict[str, Any]]:
    """The options' AnsibleModule argument spec."""
    return {
        option.name: {"type": "bool", "default": False} if option.is_switch else {"type": "str", "choices": list(option.choices)}
        for option in CRIU_OPTIONS
    }


def values(params: Mapping[str, Any]) -> dict[str, Any]:
    """Just these options from a module's params (what the sender hands to the receiver)."""
    return {name: params.get(name) for name in NAMES}


def argv(params: Mapping[str, Any]) -> list[str]:
    """The runc flags for the options set in params, in the table's order."""
    flags: list[str] = []
    for option in CRIU_OPTIONS:
        value = params.get(option.name)
        if value and option.is_switch:
            flags.append(option.flag)
        elif value:
            flags += [option.flag, str(value)]
    return flags
