"""Seed ansible-test's pip bootstrap cache with a script that uses ensurepip instead of downloading.

ansible-test fetches get-pip from a host this machine cannot reach. Its cache path is keyed by the pip
version that the installed ansible-test asks for (pip 23.1.2 for ansible-core 2.16, 24.2 for 2.19, 25.2 for
2.21), read here from the ansible-test of the Python that runs this script. An existing cached script,
downloaded or seeded earlier, is left alone.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

SHIM = '''\
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip sets PIP_CONFIG_FILE=/dev/null, which would hide this machine's index configuration.
os.environ.pop("PIP_CONFIG_FILE", None)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''


def pip_version() -> str:
    """The pip version of ansible-test's default virtual environment packages (get_venv_packages)."""
    spec = importlib.util.find_spec("ansible_test")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{sys.executable} has no ansible-test")
    source = pathlib.Path(spec.submodule_search_locations[0], "_internal", "python_requirements.py")
    found = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", source.read_text(encoding="utf-8"))
    if not found:
        sys.exit(f"no default pip version found in {source}")
    return found.group(1)


def main() -> None:
    cache = pathlib.Path.home() / ".ansible/test/cache" / f"get_pip_{pip_version().replace('.', '_')}.py"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(SHIM, encoding="utf-8")


if __name__ == "__main__":
    main()
