"""umlip sweep: papermill runs of the quickstart notebook on a Dask LocalCluster, with EMT (fast, real)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from umlip_helpers.cli import main as umlip_main
from umlip_helpers.sweep import SweepError, expand_grid, parse_params, run_sweep, slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "notebooks" / "00_quickstart.ipynb"


def test_params_are_typed_from_the_parameters_cell():
    combos = expand_grid(QUICKSTART, parse_params(["model=emt,sevennet-0", "element=Cu"]))
    assert combos == [{"model": "emt", "element": "Cu"}, {"model": "sevennet-0", "element": "Cu"}]


def test_undeclared_parameter_is_refused_before_any_run(tmp_path):
    with pytest.raises(SweepError, match="does not declare a parameter 'temperature'.*model"):
        run_sweep(QUICKSTART, {"temperature": ["300"]}, out=tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(SweepError, match="set by the sweep itself"):
        expand_grid(QUICKSTART, {"results_json": ["x.json"]})
    with pytest.raises(SweepError, match="expected NAME=VALUE"):
        parse_params(["model"])


def test_wrong_type_is_refused(tmp_path):
    notebook = tmp_path / "typed.ipynb"
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "profile = 'ci'\nresults_json = None\nsteps = 10\nscale = 1.0\nverbose = False",
        metadata={"tags": ["parameters"]})], metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                     "display_name": "Python 3"}})
    nbformat.write(nb, notebook)
    assert expand_grid(notebook, {"steps": ["5"], "scale": ["0.5"], "verbose": ["true"]}) == [
        {"steps": 5, "scale": 0.5, "verbose": True}]
    with pytest.raises(SweepError, match="steps: 'ten' is not an int"):
        expand_grid(notebook, {"steps": ["ten"]})
    with pytest.raises(SweepError, match="scale: 'big' is not a float"):
        expand_grid(notebook, {"scale": ["big"]})


@pytest.mark.slow
@pytest.mark.notebook
def test_sweep_table_failure_and_rerun(tmp_path):
    out = tmp_path / "sweep"
    # Cu and Ni succeed; "Zz" is no element, so that run's cell raises and the run is marked failed.
    code = umlip_main(["sweep", str(QUICKSTART), "--param", "model=emt", "--param", "element=Cu,Ni,Zz",
                       "--out", str(out), "--workers", "2"])
    assert code == 0
    table = pd.read_csv(out / "sweep.csv").set_index("param.element")
    assert list(table["status"].sort_index()) == ["done", "done", "failed"]
    assert re.match(r"cell \[\d+\] raised ValueError", table.loc["Zz", "error"]), table.loc["Zz", "error"]
    # EMT's lattice constants: Cu larger than Ni, both within 3 % of 3.6 and 3.5 Å.
    a_cu, a_ni = table.loc["Cu", "a0_angstrom"], table.loc["Ni", "a0_angstrom"]
    assert 3.49 < a_cu < 3.71 and 3.39 < a_ni < 3.61 and a_cu > a_ni + 0.05
    assert (out / "sweep.png").stat().st_size > 1000
    summary = json.loads((out / "runs" / "model=emt__element=Cu" / "results.json").read_text())
    assert summary["provenance"]["model"]["name"] == "emt"

    # A rerun leaves the finished runs alone and retries only the failed one.
    finished = out / "runs" / "model=emt__element=Ni" / "status.json"
    before = finished.read_text()
    result = run_sweep(QUICKSTART, {"model": ["emt"], "element": ["Cu", "Ni", "Zz"]}, out=out, workers=1,
                       progress=False)
    assert (result.executed, result.skipped, len(result.failed)) == (1, 2, 1)
    assert finished.read_text() == before


def test_slurm_cluster_is_configured_from_the_environment(monkeypatch):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setenv("UMLIP_SLURM_QUEUE", "gpu")
    monkeypatch.setenv("UMLIP_SLURM_ACCOUNT", "mat123")
    monkeypatch.setenv("UMLIP_SLURM_GPUS", "1")
    monkeypatch.setenv("UMLIP_SLURM_WALLTIME", "08:00:00")
    monkeypatch.setenv("UMLIP_SLURM_PROLOGUE", "module load cuda; source .venv/bin/activate")
    cluster = slurm_cluster(workers=0)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A mat123", "#SBATCH --gres=gpu:1", "#SBATCH -t 08:00:00",
                 "module load cuda", "source .venv/bin/activate"):
        assert line in script, (line, script)


def test_list_and_dict_parameters_take_literals_or_one_name_per_run():
    eos = QUICKSTART.parent / "01_ni_eos.ipynb"
    assert expand_grid(eos, parse_params(["models=sevennet-0,chgnet-0.3.0"])) == [
        {"models": ["sevennet-0"]}, {"models": ["chgnet-0.3.0"]}]
    assert expand_grid(eos, parse_params(['models=["emt","sevennet-0"],["chgnet-0.3.0"]'])) == [
        {"models": ["emt", "sevennet-0"]}, {"models": ["chgnet-0.3.0"]}]
    alloys = QUICKSTART.parent / "03_ni_alloys.ipynb"
    assert expand_grid(alloys, parse_params(['solutes_by_model={"emt": ["Cu", "Al"]}'])) == [
        {"solutes_by_model": {"emt": ["Cu", "Al"]}}]
    with pytest.raises(SweepError, match="solutes_by_model: 'emt' is not a dict literal"):
        expand_grid(alloys, parse_params(["solutes_by_model=emt"]))
    with pytest.raises(SweepError, match=r"models: '\{.a.: 1\}' is a dict, the notebook declares a list"):
        expand_grid(eos, {"models": ['{"a": 1}']})
