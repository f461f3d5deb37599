"""The migrate role's controller-side tasks, run by ansible-playbook on localhost: templating and conditionals that
must hold under ansible-core 2.16's templating as under 2.19's stricter one (the core legs run this file too)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOK = pathlib.Path(__file__).with_name("files") / "plan.yml"
INVENTORY = """\
[migration_source]
host-a migrate_address=192.0.2.10
[migration_destination]
host-b migrate_address=192.0.2.20
"""


def run_plan(tmp_path: pathlib.Path, *extra_vars: str) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
    """ansible-playbook of the ansible-core that runs this test, with only the working tree's collection."""
    (tmp_path / "inventory").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "ansible.cfg").write_text("", encoding="utf-8")
    out = tmp_path / "plan.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1")
    argv = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory"), str(PLAYBOOK),
            "-e", f"plan_out={out}"]
    for extra in extra_vars:
        argv += ["-e", extra]
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120), out


def test_plan_names_the_hosts_and_the_certificate_holds_both_addresses(tmp_path):
    # -e gives strings: "false" must count as false (the bug fixed in agents-and-role-inputs.yml).
    result, out = run_plan(tmp_path, "migrate_container=web1", "migrate_id=web1-test", "migrate_setup_nfs=false")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert {key: plan[key] for key in plan if key != "cert"} == {
        "source": "host-a", "destination": "host-b", "run_id": "web1-test", "needs_nfs": False,
        "nfs_server": "host-a", "nfs_clients": ["host-b"], "nfs_client_addresses": ["192.0.2.20"],
    }
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=plan["cert"],
                         capture_output=True, text=True, check=True).stdout
    assert "IP Address:192.0.2.10" in san and "IP Address:192.0.2.20" in san


def test_plan_refuses_the_same_host_twice(tmp_path):
    result, out = run_plan(tmp_path, "migrate_container=web1", "migrate_source=host-a", "migrate_destination=host-a")
    assert result.returncode != 0
    assert "The source and the destination are the same host (host-a)" in result.stdout
    assert not out.exists()
