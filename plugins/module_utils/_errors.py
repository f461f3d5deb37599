# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error model: module_utils raise these, and each module turns them into fail_json once."""

from __future__ import annotations

import platform
from typing import Any, Mapping, Sequence

# How many of CRIU's log lines a message quotes (the excerpt itself is returned whole).
QUOTED_LOG_LINES = 8


class FerryError(Exception):
    """A step failed: which step, on which host, why, and the lines of CRIU's log that explain it."""

    verb = "failed"

    def __init__(self, cause: str, step: str = "", host: str = "", log: Sequence[str] = (), log_path: str = "",
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.step = step
        self.host = host or platform.node()
        self.log = list(log)
        self.log_path = log_path
        # Fields the module's failed result carries beside msg (the state it saw, the command it ran, ...).
        self.details = dict(details or {})

    def at(self, step: str) -> FerryError:
        """Name the step where an error without one happened; returns self, for raise ... from."""
        if not self.step:
            self.step = step
        return self

    def message(self) -> str:
        """The sentence a user reads: step, host, cause and the end of CRIU's log."""
        where = f"{self.step} {self.verb} on {self.host}" if self.step else f"{self.verb} on {self.host}"
        text = f"{where}: {self.cause}"
        if self.log:
            source = f" {self.log_path}" if self.log_path else ""
            text += f". CRIU log{source}: " + " | ".join(self.log[-QUOTED_LOG_LINES:])
        return text

    def result(self) -> dict[str, Any]:
        """What fail_json gets: the message, CRIU's log lines and the details."""
        fields = dict(self.details, msg=self.message())
        if self.log:
            fields.update(criu_log=self.log_path, criu_log_excerpt=self.log)
        return fields


class InputError(FerryError):
    """A request that cannot be carried out as asked; nothing was changed."""

    verb = "refused"


class CommandError(FerryError):
    """A command (runc, CRIU, exportfs, ...) failed or could not be run."""
