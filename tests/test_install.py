"""The package outside the checkout: a non-editable install carries every module and the shipped data, and
umlip_helpers.paths finds that data from anywhere (or the folder $UMLIP_DATA_DIR names)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from umlip_helpers.errors import UmlipError
from umlip_helpers.paths import data_path

ROOT = Path(__file__).resolve().parents[1]

LOAD_A_FRAME = """
import json
import umlip_helpers
from umlip_helpers.data import read_dataset
from umlip_helpers.paths import data_path
path = data_path("ymno3", "ymno3_vasp_200.xyz")
frames = read_dataset(path, max_frames=1, require=("energy", "forces"))
print(json.dumps({"package": umlip_helpers.__file__, "path": str(path), "n_atoms": len(frames[0].atoms),
                  "energy": frames[0].energy_ev}))
"""


def _run(code: str, cwd: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("UMLIP_DATA_DIR", "PYTHONPATH")}
    environment.update(env, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target`` of this checkout (not editable, no dependencies: the venv has them)."""
    target = tmp_path_factory.mktemp("installed")
    build = tmp_path_factory.mktemp("source")
    source = build / "umlip-book"  # a copy, so that the build's egg-info and build/ stay out of the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "_build", "runs", ".git", "*.egg-info",
                                                                 "__pycache__", "build", "benchmarks", "notebooks"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=600)
    return target


def test_installed_package_holds_every_module(installed):
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "umlip_helpers").rglob("*.py")}
    copied = {p.relative_to(installed).as_posix() for p in (installed / "umlip_helpers").rglob("*.py")}
    missing = sorted(source - copied)
    assert not missing, f"not installed (add their package to [tool.setuptools] packages in pyproject): {missing}"


def test_installed_package_loads_its_shipped_data_from_anywhere(installed, tmp_path):
    seen = _run(LOAD_A_FRAME, tmp_path, PYTHONPATH=str(installed))
    assert Path(seen["package"]).is_relative_to(installed), f"imported the checkout, not the install: {seen}"
    assert Path(seen["path"]).is_relative_to(installed / "umlip_helpers" / "shipped_data"), seen
    assert seen["n_atoms"] == 120 and seen["energy"] < 0
    tracked = subprocess.run(["git", "ls-files", "data"], cwd=ROOT, capture_output=True, text=True, check=True)
    shipped = {line.removeprefix("data/") for line in tracked.stdout.splitlines()}
    copied = {p.relative_to(installed / "umlip_helpers" / "shipped_data").as_posix()
              for p in (installed / "umlip_helpers" / "shipped_data").rglob("*") if p.is_file()}
    assert shipped and shipped <= copied, f"not installed: {sorted(shipped - copied)}"


def test_data_dir_from_the_environment_wins(tmp_path, monkeypatch):
    own = tmp_path / "my_data"
    (own / "ymno3").mkdir(parents=True)
    shutil.copy(data_path("ymno3", "ymno3_vasp_200.xyz"), own / "ymno3" / "ymno3_vasp_200.xyz")
    seen = _run(LOAD_A_FRAME, tmp_path, UMLIP_DATA_DIR=str(own))
    assert Path(seen["path"]) == own / "ymno3" / "ymno3_vasp_200.xyz" and seen["n_atoms"] == 120
    monkeypatch.setenv("UMLIP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UmlipError, match="UMLIP_DATA_DIR=.*nowhere is not a folder"):
        data_path("ymno3")
