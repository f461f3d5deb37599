"""Each role's README names the variables of its argument specs, no more and no fewer, and its defaults are specs."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"
# The first cell of a README table row: | `variable` | ...
README_VARIABLE = re.compile(r"^\| `([a-z0-9_]+)` \|", re.MULTILINE)


def spec_options(role: pathlib.Path) -> set[str]:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]
    return {name for entry_point in specs.values() for name in entry_point.get("options", {})}


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "README.md").exists()))
def test_readme_names_every_variable_of_the_specs(role):
    readme = (ROLES / role / "README.md").read_text(encoding="utf-8")
    in_readme = set(README_VARIABLE.findall(readme))
    in_specs = spec_options(ROLES / role)
    assert sorted(in_specs - in_readme) == [], "in meta/argument_specs.yml, not in README.md"
    assert sorted(in_readme - in_specs) == [], "in README.md, not in meta/argument_specs.yml"


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "defaults" / "main.yml").exists()))
def test_every_default_is_in_the_specs(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert sorted(set(defaults) - spec_options(ROLES / role)) == []


def test_every_role_has_a_readme():
    assert sorted(p.name for p in ROLES.iterdir() if not (p / "README.md").exists()) == []


def test_the_migrate_variables_the_evacuate_role_reads_have_the_migrate_roles_defaults():
    evacuate = yaml.safe_load((ROLES / "evacuate" / "defaults" / "main.yml").read_text(encoding="utf-8"))
    migrate = yaml.safe_load((ROLES / "migrate" / "defaults" / "main.yml").read_text(encoding="utf-8"))
    shared = {name: value for name, value in evacuate.items() if name.startswith("migrate_")}
    assert shared and shared == {name: migrate[name] for name in shared}
