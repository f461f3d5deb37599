"""Seed ansible-test's pip bootstrap cache with a script that uses ensurepip instead of downloading.

ansible-test fetches get-pip from a host this machine cannot reach. Its cache path is keyed by the pip
version that the pinned ansible-core asks for (pip 24.2 for ansible-core 2.19). An existing cached
script, downloaded or seeded earlier, is left alone.
"""

from __future__ import annotations

import pathlib

PIP_VERSION = "24.2"

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


def main() -> None:
    cache = pathlib.Path.home() / ".ansible/test/cache" / f"get_pip_{PIP_VERSION.replace('.', '_')}.py"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(SHIM, encoding="utf-8")


if __name__ == "__main__":
    main()
