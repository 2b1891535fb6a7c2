"""The install: requirements/base.txt and environment.yml agree, and the venv holds the pinned set."""

from __future__ import annotations

import re
from importlib import metadata

import yaml


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_environment_yml_mirrors_requirements(repo_root):
    requirements = _pins((repo_root / "requirements" / "base.txt").read_text().splitlines())
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    conda_pins = _pins(pip_section)
    assert conda_pins.pop("torch") == "2.13.0"
    assert conda_pins == requirements


def test_installed_versions_match_the_pins(repo_root):
    requirements = _pins((repo_root / "requirements" / "base.txt").read_text().splitlines())
    wrong = {name: (pin, metadata.version(name)) for name, pin in requirements.items()
             if metadata.version(name) != pin}
    assert not wrong, f"installed versions differ from requirements/base.txt: {wrong}"
    assert metadata.version("torch").startswith("2.13.0")
    assert metadata.version("mace-torch") == "0.3.16"
