"""`umlip models` and `umlip evaluate` end to end, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def umlip(*args, check=True):
    run = subprocess.run([sys.executable, "-m", "umlip_helpers.cli", *map(str, args)], capture_output=True,
                         text=True, timeout=900)
    if check and run.returncode != 0:
        raise AssertionError(f"umlip {' '.join(map(str, args))} failed:\n{run.stderr[-3000:]}")
    return run


def test_models_table_and_json():
    table = umlip("models").stdout
    assert "sevennet-0" in table and "chgnet-0.3.0" in table and "available_offline" in table
    rows = json.loads(umlip("models", "--json").stdout)
    by_name = {row["name"]: row for row in rows}
    assert by_name["sevennet-0"]["available_offline"] is True
    assert by_name["sevennet-0"]["doi"] == "10.1021/acs.jctc.4c00190"


def test_unknown_model_is_a_clear_error(ymno3_path):
    run = umlip("evaluate", "--model", "no-such-model", "--data", ymno3_path, check=False)
    assert run.returncode == 2 and "unknown model 'no-such-model'" in run.stderr


def test_bad_data_is_a_clear_error(tmp_path):
    broken = tmp_path / "vasprun.xml"
    broken.write_text("<?xml version='1.0'?><modeling><generator>")
    run = umlip("evaluate", "--model", "emt", "--data", broken, check=False)
    assert run.returncode == 2 and "vasprun.xml: frame 0: file" in run.stderr


@pytest.mark.slow
def test_evaluate_writes_json_with_provenance(tmp_path, ymno3_path):
    out = tmp_path / "out.json"
    umlip("evaluate", "--model", "sevennet-0", "--data", ymno3_path, "--max-frames", 2, "--threads", 1,
          "--json", out, "--plot", tmp_path / "parity.png")
    result = json.loads(out.read_text())
    assert result["n_frames"] == 2 and result["model"] == "sevennet-0"
    assert 0.03 < result["force_mae_ev_per_angstrom"] < 0.12
    assert result["provenance"]["model"]["sha256"] and result["provenance"]["parameters"]["dataset_sha256"]
    assert result["provenance"]["packages"]["numpy"] == np.__version__  # labels can differ in the last bit with it
    assert result["provenance"]["cpu"]  # and with the CPU's BLAS kernels
    assert (tmp_path / "parity.png").stat().st_size > 10_000


@pytest.mark.parametrize("command", [["md", "--steps", "1", "--temperature", "300"], ["relax-active"]])
def test_unreadable_structure_is_a_clear_error(tmp_path, command):
    broken = tmp_path / "cell.xyz"
    broken.write_text("3\nnot an extxyz header\nNi 0 0\n")
    run = umlip(command[0], "--model", "emt", "--structure", broken, *command[1:], check=False)
    assert run.returncode == 2 and f"{broken}: frame -: structure: ASE cannot read it" in run.stderr
    run = umlip(command[0], "--model", "emt", "--structure", tmp_path / "absent.xyz", *command[1:], check=False)
    assert run.returncode == 2 and "absent.xyz: frame -: structure: file does not exist" in run.stderr
