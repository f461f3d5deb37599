# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action of migration_sender and migration_receiver (plugins/action/): each module starts an agent that runs on
after the module has returned, so it needs the collection's module_utils as files of its own, not as the module's
import machinery (AnsiballZ's zip or mitogen's importer) provides them. The action sends them along, in one zip, as
the module's agent_code."""

from __future__ import annotations

import base64
import io
import os
import zipfile

from ansible.plugins.action import ActionBase

MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections/ferry/runc/plugins/module_utils"
ENTRY_POINT = (
    "import sys\n"
    "from ansible_collections.ferry.runc.plugins.module_utils._agent import main\n"
    "sys.exit(main(sys.argv))\n"
)
# A fixed date keeps the zip the same for the same code.
ZIP_DATE = (2026, 1, 1, 0, 0, 0)


def agent_code(module_utils: str = MODULE_UTILS) -> str:
    """The agent's program: __main__.py and the collection's module_utils, as a base64 zip python3 runs directly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("__main__.py", ZIP_DATE), ENTRY_POINT)
        for package in ("ansible_collections", "ansible_collections/ferry", "ansible_collections/ferry/runc",
                        "ansible_collections/ferry/runc/plugins", PACKAGE):
            archive.writestr(zipfile.ZipInfo(f"{package}/__init__.py", ZIP_DATE), "")
        for name in sorted(os.listdir(module_utils)):
            if name.endswith(".py") and name != "__init__.py":
                with open(os.path.join(module_utils, name), "rb") as source:
                    archive.writestr(zipfile.ZipInfo(f"{PACKAGE}/{name}", ZIP_DATE), source.read())
    return base64.b64encode(buffer.getvalue()).decode()


class AgentAction(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        module_args = dict(self._task.args, agent_code=agent_code())
        result.update(self._execute_module(module_name=self._task.action, module_args=module_args, task_vars=task_vars))
        return result
