"""run_md with real calculators: EMT for physics and restart checks, SevenNet-0 on tobermorite as a smoke run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from ase.io.trajectory import Trajectory
from ase.io.ulm import InvalidULMFileError

from umlip_helpers.errors import UmlipError, UnstableStructure
from umlip_helpers.md import LOG_NAME, TRAJECTORY_NAME, UNSTABLE_NAME, run_md

ROOT = Path(__file__).resolve().parent.parent


def copper(repeat: int = 2):
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


def frames_of(directory: Path) -> list:
    return read(directory / TRAJECTORY_NAME, ":")


def test_nve_conserves_energy():
    result = run_md(copper(), EMT(), "nve", temperature_k=300, timestep_fs=2.0, steps=120, progress=False)
    assert result.steps_completed == 120 and len(result.step) == 121
    assert abs(result.energy_drift_mev_per_atom_per_ps) < 0.5
    # the total energy fluctuates far less than the potential energy it exchanges with the kinetic
    assert np.std(result.etot_ev) < 0.02 * np.std(result.epot_ev)
    assert np.allclose(result.conserved_ev, result.etot_ev)
    assert result.throughput_atom_steps_per_s > 0


def test_langevin_heats_to_target_temperature():
    atoms = copper()
    result = run_md(atoms, EMT(), "nvt", temperature_k=500, timestep_fs=2.0, steps=240, friction_per_fs=0.05,
                    init_velocities=False, progress=False)
    assert result.temperature_k[0] == 0.0
    assert abs(result.mean_temperature_k - 500) < 0.15 * 500
    assert np.isnan(result.energy_drift_mev_per_atom_per_ps)  # Langevin conserves nothing
    assert np.allclose(atoms.get_momenta(), 0.0)  # the caller's atoms are not touched


def test_langevin_noise_is_independent_of_the_initial_velocities():
    # kicks drawn from the same stream as the Maxwell-Boltzmann velocities would heat the first step coherently
    for seed in range(4):
        result = run_md(copper(), EMT(), "nvt", temperature_k=300, timestep_fs=0.5, steps=1, seed=seed,
                        progress=False)
        # the random kick changes E_kin by about sqrt(4 friction dt kT E_kin) = 0.025 eV here
        assert abs(result.ekin_ev[1] - result.ekin_ev[0]) < 0.1, seed


@pytest.mark.parametrize("thermostat", ["nose-hoover", "bussi"])
def test_other_thermostats_conserve_their_extended_energy(thermostat):
    result = run_md(copper(), EMT(), "nvt", temperature_k=400, timestep_fs=2.0, steps=100, thermostat=thermostat,
                    tdamp_fs=50, progress=False)
    assert abs(result.energy_drift_mev_per_atom_per_ps) < 1.0
    assert 250 < result.mean_temperature_k < 550


def test_npt_changes_the_volume_towards_the_target_pressure():
    atoms = copper()
    atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)  # stretched: tensile stress, the cell must shrink
    result = run_md(atoms, EMT(), "npt", temperature_k=300, timestep_fs=2.0, steps=60, pdamp_fs=200, tdamp_fs=50,
                    progress=False)
    assert result.pressure_gpa[0] < -1.0
    assert result.volume_angstrom3.min() < result.volume_angstrom3[0] - 1.0


@pytest.mark.parametrize("ensemble,thermostat", [("nve", None), ("nvt", "langevin")])
def test_resume_after_torn_writes_repeats_the_uninterrupted_run(tmp_path, ensemble, thermostat):
    kwargs = dict(ensemble=ensemble, thermostat=thermostat, temperature_k=300, timestep_fs=2.0, traj_interval=5,
                  seed=3, progress=False)
    full = run_md(copper(), EMT(), steps=40, out_dir=tmp_path / "full", **kwargs)
    run_md(copper(), EMT(), steps=20, out_dir=tmp_path / "split", **kwargs)
    # a kill while a frame and a log line were being written leaves partial bytes at the ends of both files
    with open(tmp_path / "split" / TRAJECTORY_NAME, "ab") as handle:
        handle.write(os.urandom(700))
    with open(tmp_path / "split" / LOG_NAME, "a") as handle:
        handle.write("21,0.042,-1.2")
    with pytest.raises(UmlipError, match="resume=True"):
        run_md(copper(), EMT(), steps=40, out_dir=tmp_path / "split", **kwargs)
    with pytest.raises(UmlipError, match=r"another run: seed, timestep_fs differ \(saved seed=3; timestep_fs=2.0"):
        run_md(copper(), EMT(), steps=40, out_dir=tmp_path / "split", resume=True, **{**kwargs, "seed": 4,
                                                                                     "timestep_fs": 1.0})
    resumed = run_md(copper(), EMT(), steps=40, out_dir=tmp_path / "split", resume=True, **kwargs)
    assert resumed.resumed_from_step == 20 and resumed.steps_this_session == 20

    a, b = frames_of(tmp_path / "full"), frames_of(tmp_path / "split")
    assert [f.info["md_step"] for f in b] == [f.info["md_step"] for f in a] == list(range(0, 41, 5))
    for fa, fb in zip(a, b):
        # equal up to round-off (EMT's neighbour list sums in a different order after a restart)
        assert np.abs(fa.positions - fb.positions).max() < 1e-9
        assert np.abs(fa.get_momenta() - fb.get_momenta()).max() < 1e-9
    assert np.array_equal(full.step, resumed.step)
    assert np.allclose(full.etot_ev, resumed.etot_ev, rtol=0, atol=1e-9)


def test_resume_after_a_real_kill(tmp_path):
    """SIGKILL a run in a subprocess, resume it, and compare with an uninterrupted run frame by frame."""
    kwargs = dict(ensemble="nve", temperature_k=300, timestep_fs=2.0, traj_interval=2, seed=1, progress=False)
    script = textwrap.dedent(f"""
        from ase.build import bulk
        from ase.calculators.emt import EMT
        from umlip_helpers.md import run_md
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        run_md(atoms, EMT(), steps=100000, out_dir={str(tmp_path / 'killed')!r}, **{kwargs!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    traj = tmp_path / "killed" / TRAJECTORY_NAME
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                with Trajectory(str(traj)) as t:
                    if len(t) >= 6:
                        break
            except (OSError, InvalidULMFileError):  # not created yet, or its header is being written
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = read(traj, -1).info["md_step"]
    total = killed_at + 10
    resumed = run_md(copper(), EMT(), steps=total, out_dir=tmp_path / "killed", resume=True, **kwargs)
    run_md(copper(), EMT(), steps=total, out_dir=tmp_path / "full", **kwargs)
    a, b = frames_of(tmp_path / "full"), frames_of(tmp_path / "killed")
    assert resumed.resumed_from_step == killed_at
    assert [f.info["md_step"] for f in b] == [f.info["md_step"] for f in a] == list(range(0, total + 1, 2))
    assert all(np.abs(fa.positions - fb.positions).max() < 1e-9 for fa, fb in zip(a, b))
    assert list(resumed.step) == list(range(0, total + 1))


def test_overlapping_start_is_refused_before_any_force_call():
    atoms = copper()
    atoms.positions[1] = atoms.positions[0] + [0.2, 0.1, 0.0]
    with pytest.raises(UnstableStructure, match=r"atoms 0 and 1 .* 0\.224 Å apart"):
        run_md(atoms, EMT(), "nve", steps=5, progress=False)


@pytest.mark.parametrize("motion", ["approach", "compress"])
def test_proximity_guard_flags_exactly_what_a_full_search_flags(motion):
    # the guard skips neighbour searches while no atom has moved far enough to matter; step by step it must agree
    # with a full search, and it must have skipped most of them
    from umlip_helpers.analysis import closest_pair
    from umlip_helpers.md import _ProximityGuard

    atoms = copper()
    rng = np.random.default_rng(1)
    guard = _ProximityGuard(0.5)
    searches, flagged_at = 0, None
    for step in range(400):
        if motion == "approach":  # atom 1 walks onto atom 0 while every atom jiggles
            atoms.positions[1] += 0.01 * (atoms.positions[0] - atoms.positions[1])
            atoms.positions += rng.normal(0.0, 0.003, atoms.positions.shape)
        else:  # the whole cell shrinks, atoms with it
            atoms.set_cell(atoms.cell * 0.995, scale_atoms=True)
        reference = guard.reference
        found, expected = guard.check(atoms), closest_pair(atoms, 0.5)
        searches += guard.reference is not reference or found is not None
        assert (found is None) == (expected is None), step
        if found is not None:
            assert found[2] == pytest.approx(expected[2])
            flagged_at = step
            break
    assert flagged_at is not None
    if motion == "approach":
        assert searches < flagged_at / 3
    else:  # a changed cell always means a new search
        assert searches == flagged_at + 1


def test_exploding_run_stops_and_keeps_its_trajectory(tmp_path):
    atoms = copper()
    atoms.positions[1] = atoms.positions[0] + [0.85, 0.0, 0.0]  # allowed at the start, violently repulsive
    with pytest.raises(UnstableStructure, match=r"stopped at step [1-9]\d* .*temperature") as error:
        run_md(atoms, EMT(), "nve", temperature_k=300, timestep_fs=2.0, steps=200, traj_interval=1,
               out_dir=tmp_path, progress=False)
    stopped_at = int(str(error.value).split("step ")[1].split()[0])
    frames = frames_of(tmp_path)
    assert [f.info["md_step"] for f in frames] == list(range(stopped_at))
    assert read(tmp_path / UNSTABLE_NAME).get_temperature() > 3000


def test_cli_md_writes_json_and_resumes(tmp_path):
    from umlip_helpers.cli import main

    structure = tmp_path / "cu.extxyz"
    write(structure, copper())
    out, js = tmp_path / "run", tmp_path / "md.json"
    args = ["md", "--model", "emt", "--structure", str(structure), "--temperature", "300", "--out", str(out)]
    assert main(args + ["--steps", "10", "--json", str(js)]) == 0
    first = json.loads(js.read_text())
    assert first["steps_completed"] == 10 and first["provenance"]["model"]["name"] == "emt"
    assert main(args + ["--steps", "20"]) == 2  # the run exists and --resume was not given
    assert main(args + ["--steps", "20", "--resume", "--json", str(js)]) == 0
    second = json.loads(js.read_text())
    assert second["resumed_from_step"] == 10 and second["step"] == list(range(21))


@pytest.mark.slow
def test_sevennet_smoke_run_on_tobermorite(tmp_path):
    from umlip_helpers.analysis import read_tobermorite
    from umlip_helpers.models import load_calculator

    calc = load_calculator("sevennet-0", device="cpu", threads=1)
    result = run_md(read_tobermorite(), calc, "nvt", temperature_k=300, timestep_fs=0.5, steps=2, traj_interval=1,
                    out_dir=tmp_path, progress=False)
    assert result.n_atoms == 352 and result.steps_completed == 2
    assert np.all(np.isfinite(result.epot_ev)) and np.all(np.isfinite(result.pressure_gpa))
    assert len(frames_of(tmp_path)) == 3
    assert result.provenance["model"]["name"] == "sevennet-0"
