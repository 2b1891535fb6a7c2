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


def test_help_lists_every_command_and_ends_with_a_sentence():
    text = umlip("--help").stdout
    for command in ("models", "evaluate", "eos", "relax", "elastic", "phonons", "finetune", "export", "md",
                    "relax-active", "distill", "sweep"):
        assert command in text
    description = text.split("positional arguments")[0].strip()
    assert description.endswith("for each command.")


def test_relax_elastic_and_phonons_of_emt_nickel(tmp_path):
    umlip("relax", "--model", "emt", "--structure", "Ni", "--json", tmp_path / "relax.json", "--out",
          tmp_path / "ni.xyz")
    relaxed = json.loads((tmp_path / "relax.json").read_text())
    assert relaxed["converged"] and relaxed["provenance"]["model"]["name"] == "emt"
    assert (tmp_path / "ni.xyz").is_file() and (tmp_path / "relax.config.yml").is_file()
    umlip("elastic", "--model", "emt", "--structure", "Ni", "--json", tmp_path / "elastic.json")
    c = json.loads((tmp_path / "elastic.json").read_text())
    assert c["c11_gpa"] > c["c12_gpa"] > 0 and c["c44_gpa"] > 0
    umlip("phonons", "--model", "emt", "--structure", "Ni", "--supercell", 2, "--mesh", 4, "--json",
          tmp_path / "phonons.json", "--plot", tmp_path / "bands.png")
    assert json.loads((tmp_path / "phonons.json").read_text())["type"] == "PhononResult"
    assert (tmp_path / "bands.png").stat().st_size > 10_000


def _tiny_finetune_inputs(tmp_path, ymno3_path):
    from umlip_helpers.data import read_dataset
    from umlip_helpers.models import get_family

    model = get_family("sevennet").build(tmp_path / "tiny.pth", ["Y", "Mn", "O"], seed=0)
    train = read_dataset(ymno3_path, max_frames=2).write_extxyz(tmp_path / "train.xyz")
    return model, train


def test_finetune_takes_a_config_file_and_flags_win(tmp_path, ymno3_path):
    import yaml

    model, train = _tiny_finetune_inputs(tmp_path, ymno3_path)
    config = tmp_path / "ft.yml"
    config.write_text(yaml.safe_dump({"model": str(model), "train": str(train), "strategy": "lora", "epochs": 5,
                                      "lr": 0.002, "lora_rank": 2, "force-weight": 2.0, "device": "cpu",
                                      "batch-size": 2}))
    out = tmp_path / "ft"
    umlip("finetune", "--config", config, "--epochs", 1, "--out", out)
    manifest = json.loads((out / "umlip_model.json").read_text())
    hp = manifest["hyperparameters"]
    assert hp["epochs"] == 1 and hp["lr"] == 0.002 and hp["lora_rank"] == 2 and hp["batch_size"] == 2
    assert hp["weights"]["forces_ev_per_angstrom"] == 2.0 and manifest["lora"]["r"] == 2
    resolved = yaml.safe_load((out / "umlip_config.yml").read_text())
    assert resolved["epochs"] == 1 and resolved["lr"] == 0.002 and resolved["train"] == str(train)


@pytest.mark.parametrize("content, message", [
    ({"epochs": 2, "learning-rate": 0.1}, "unknown key 'learning-rate'"),
    ({"epochs": "many"}, "key 'epochs': 'many' is not an integer"),
    ({"strategy": "partial"}, "key 'strategy': 'partial' is not one of lora, head, full"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_config_files_are_clear_errors(tmp_path, content, message):
    import yaml

    config = tmp_path / "bad.yml"
    config.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    run = umlip("finetune", "--config", config, "--train", "x.xyz", "--out", tmp_path / "o", check=False)
    assert run.returncode == 2 and f"{config}:" in run.stderr and message in run.stderr
    missing = umlip("eos", "--config", tmp_path / "absent.yml", check=False)
    assert missing.returncode == 2 and "absent.yml: config file does not exist" in missing.stderr
