"""Periodic against naive fine-tuning along MD: SevenNet-0 as the base, EMT as the parent, a 4-atom Au cell.

Au because there SevenNet-0 is much stiffer than EMT (a strong bias): the foundation model's MD samples narrower
vibrations than the fine-tuned model visits, which is the situation the method is about.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_stress

from umlip_helpers.active import compare_production, naive_finetune, periodic_finetune
from umlip_helpers.active.uncertainty import environment_descriptors
from umlip_helpers.io import ModelInfo, attach_model_info
from umlip_helpers.parents import ParentFailed, labelled_frames_parent, make_parent

BUDGET = 6
SAMPLING_K, PRODUCTION_K = 300.0, 600.0


def au_cell():
    return bulk("Au", cubic=True)


def cu_cell():
    return bulk("Cu", cubic=True)


class CountingEMT:
    """An EMT parent factory that counts its calls."""

    def __init__(self):
        self.calls = 0
        attach_model_info(self, ModelInfo(name="emt (counted)"))

    def __call__(self, atoms):
        self.calls += 1
        return EMT()


@pytest.fixture(scope="module")
def workflows(sevennet0, tmp_path_factory):
    out = tmp_path_factory.mktemp("periodic")
    parents = {"naive": CountingEMT(), "periodic": CountingEMT()}
    naive = naive_finetune(au_cell(), sevennet0, parents["naive"], BUDGET, n_trajectories=3,
                           sample_interval_steps=20, temperature_k=SAMPLING_K, out_dir=out / "naive", progress=False)
    periodic = periodic_finetune(au_cell(), sevennet0, parents["periodic"], BUDGET, interval_steps=20,
                                 temperature_k=SAMPLING_K, out_dir=out / "periodic", progress=False)
    parents["production"] = CountingEMT()
    production = compare_production(au_cell(), [naive, periodic], parents["production"], temperature_k=PRODUCTION_K,
                                    steps=100, eval_interval_steps=5, parent_md=True, out_dir=out / "production",
                                    progress=False)
    return naive, periodic, production, parents, out


@pytest.mark.slow
def test_equal_parent_budgets(workflows):
    naive, periodic, _, parents, _ = workflows
    assert parents["naive"].calls == parents["periodic"].calls == BUDGET
    assert naive.n_parent_calls == periodic.n_parent_calls == BUDGET
    assert naive.n_md_steps == periodic.n_md_steps == BUDGET * 20
    assert naive.n_fits == 1 and periodic.n_fits == BUDGET
    assert sorted(set(naive.origin.tolist())) == [0, 1, 2]
    # the periodic labels were sampled by ever newer models: 0 (base), 1, 2, ...
    assert periodic.sampled_by_fit.tolist() == list(range(BUDGET))
    json.dumps(periodic.to_dict())


@pytest.mark.slow
def test_fits_reproduce_the_parent_on_their_labels(workflows, sevennet0):
    naive, periodic, _, _, _ = workflows

    def force_mae(calc, frames):
        errors = []
        for frame in frames:
            atoms = frame.atoms.copy()
            atoms.calc = calc
            errors.append(np.abs(atoms.get_forces() - frame.forces_ev_per_angstrom).mean())
        return float(np.mean(errors))

    for run in (naive, periodic):
        fitted, base = force_mae(run.calculator(), run.frames()), force_mae(sevennet0, run.frames())
        assert fitted < 0.75 * base, (run.workflow, fitted, base)


@pytest.mark.slow
def test_periodic_at_least_as_accurate_as_naive_in_production(workflows):
    _, _, production, _, _ = workflows
    forces = production.forces_mae_ev_per_angstrom
    energy = production.energy_error_mev_per_atom
    assert production.steps_completed == {"naive": 100, "periodic": 100}
    assert production.unphysical_events == {"naive": 0, "periodic": 0}
    assert np.isfinite(forces["naive"]) and np.isfinite(forces["periodic"])
    assert production.force_mae_ratio_periodic_over_naive == pytest.approx(forces["periodic"] / forces["naive"])
    assert forces["periodic"] <= forces["naive"], (forces, energy)
    assert abs(energy["periodic"]) <= abs(energy["naive"]), (forces, energy)


@pytest.mark.slow
def test_parent_md_gives_the_reference_neighbour_distances(workflows):
    _, _, production, parents, _ = workflows
    # a parent single point at each of the 20 frames of both runs, and a fresh parent at each of the 101 points of
    # the parent's own MD
    assert parents["production"].calls == 2 * (100 // 5) + 100 + 1
    edges = production.nn_distance_bins_angstrom
    density = production.nn_distance_density["parent"]
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    mean_distance = np.sum(0.5 * (edges[1:] + edges[:-1]) * density * np.diff(edges))
    lattice = au_cell().cell[0, 0]
    assert mean_distance == pytest.approx(lattice / np.sqrt(2), abs=0.15)  # fcc nearest neighbours at 600 K


@pytest.mark.slow
def test_q_residual_flags_production_frames_outside_the_labels(workflows):
    from scipy.stats import spearmanr

    _, _, production, _, _ = workflows
    for name in ("naive", "periodic"):
        training = np.asarray(production.q_score_training[name])
        hotter = np.asarray(production.q_score_production[name])
        force_errors = np.asarray(production.forces_mae_along_ev_per_angstrom[name])
        assert np.median(training) <= 1.5
        # the hottest production frames lie beyond every labelled frame ...
        assert np.percentile(hotter, 90) > training.max(), name
        # ... and the frames it flags are those where the fitted model is wrong
        assert spearmanr(hotter, force_errors).statistic > 0.3, name
        assert 0.0 <= production.pca_coverage_fraction[name] <= 1.0


def test_bad_inputs_get_clear_errors():
    atoms = cu_cell()
    with pytest.raises(ValueError, match="budget"):
        naive_finetune(atoms, "sevennet-0", EMT(), 0)
    with pytest.raises(ValueError, match="budget"):
        periodic_finetune(atoms, "sevennet-0", EMT(), -1)
    with pytest.raises(ValueError, match="parent must be an ASE calculator"):
        periodic_finetune(atoms, "sevennet-0", "vasp", 4)
    with pytest.raises(ValueError, match="n_trajectories"):
        naive_finetune(atoms, "sevennet-0", EMT(), 2, n_trajectories=3)
    with pytest.raises(ValueError, match="unknown parent 'nope'"):
        make_parent("nope")


def test_environment_descriptors_see_distortion():
    atoms = cu_cell()
    ideal = environment_descriptors(atoms, ["Cu"])
    assert ideal.shape == (4, 12)
    assert np.allclose(ideal, ideal[0])  # all fcc sites are alike
    atoms.rattle(0.1, seed=1)
    assert not np.allclose(environment_descriptors(atoms, ["Cu"]), ideal, atol=1e-3)


def test_labelled_frames_parent_answers_with_the_nearest_frame(ymno3_frames):
    parent = make_parent("labelled", dataset=ymno3_frames)
    target = ymno3_frames[3].atoms.copy()
    target.rattle(0.01, seed=2)
    target.calc = parent(target)
    assert target.get_potential_energy() == ymno3_frames[3].energy_ev
    assert np.array_equal(target.get_forces(), ymno3_frames[3].forces_ev_per_angstrom)
    index, rmsd = parent.matches[-1]
    assert index == 3 and 0.005 < rmsd < 0.02
    strict = labelled_frames_parent(ymno3_frames, max_rmsd_angstrom=0.001)
    with pytest.raises(ParentFailed, match="RMSD away"):
        strict(target)
    with pytest.raises(ParentFailed, match="no frame holds Cu4"):
        parent(cu_cell())


@pytest.mark.slow
def test_periodic_resumes_from_its_saved_state(sevennet0, tmp_path):
    first = periodic_finetune(cu_cell(), sevennet0, EMT(), 2, interval_steps=10, out_dir=tmp_path, progress=False)
    again = periodic_finetune(cu_cell(), sevennet0, EMT(), 2, interval_steps=10, out_dir=tmp_path, resume=True,
                              progress=False)
    assert np.allclose(again.positions_angstrom, first.positions_angstrom)
    probe = cu_cell()
    probe.rattle(0.05, seed=3)
    energies = []
    for run in (first, again):
        atoms = probe.copy()
        atoms.calc = run.calculator()
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], abs=1e-6)
    with pytest.raises(Exception, match="belongs to another run: .*differ"):
        periodic_finetune(cu_cell(), sevennet0, EMT(), 2, interval_steps=20, out_dir=tmp_path, resume=True,
                          progress=False)


@pytest.mark.slow
def test_trainer_fit_gives_a_loadable_model(sevennet0, tmp_path):
    from umlip_helpers.models import load_calculator

    run = periodic_finetune(cu_cell(), sevennet0, EMT(), 2, interval_steps=10, fit="head",
                            fit_options={"epochs": 1}, out_dir=tmp_path, progress=False)
    assert run.n_fits == 2 and run.model_dir is not None
    calc = load_calculator(run.model_dir)
    atoms = run.frames()[-1].atoms.copy()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    # the base model's energy scale was aligned to EMT's on the labels
    assert abs(atoms.get_potential_energy() - run.parent_energies_ev[-1]) / len(atoms) < 0.05


@pytest.mark.slow
def test_runs_without_out_dir_leave_no_files(sevennet0, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = naive_finetune(cu_cell(), sevennet0, EMT(), 2, n_trajectories=1, sample_interval_steps=5, progress=False)
    production = compare_production(cu_cell(), [run], EMT(), steps=10, eval_interval_steps=5, progress=False)
    assert production.steps_completed["naive"] == 10
    assert list(tmp_path.iterdir()) == []
    probe = cu_cell()
    probe.calc = run.calculator()  # a readout fit lives in memory
    assert np.isfinite(probe.get_potential_energy())


@pytest.mark.slow
def test_readout_fit_stress_is_the_strain_derivative_of_its_energy(workflows, sevennet0):
    """So NPT and cell relaxations run on a readout fit; the stress is the fit's, not the base model's."""
    _, periodic, _, _, _ = workflows
    atoms = au_cell()
    atoms.rattle(0.05, seed=3)
    atoms.calc = periodic.calculator()
    stress = atoms.get_stress(voigt=False)
    strained = atoms.copy()
    strained.calc = atoms.calc
    numerical = calculate_numerical_stress(strained, eps=2e-3, voigt=False)
    assert np.allclose(stress, numerical, atol=1e-4), (stress, numerical)
    base = atoms.copy()
    base.calc = sevennet0
    assert np.abs(stress - base.get_stress(voigt=False)).max() > 1e-3
