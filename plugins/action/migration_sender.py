# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_sender starts an agent that needs its own copy of the collection's code: see plugins/plugin_utils/_agent_code.py."""

from __future__ import annotations

from ansible_collections.ferry.runc.plugins.plugin_utils._agent_code import AgentAction


class ActionModule(AgentAction):
    pass
