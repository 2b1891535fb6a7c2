"""Online active learning with SevenNet-0 as the surrogate and EMT as the parent (real calculators throughout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from umlip_helpers.active import ActiveLearningFailed, parent_relax, relax_active
from umlip_helpers.active.head_fit import predict
from umlip_helpers.active.surrogate import OnlineSurrogate, constrained_fmax, free_atoms
from umlip_helpers.active.systems import (METALS, TILTED_SEED, adsorbate_slab, benchmark_systems, bulk_vacancy,
                                          fraction_within, mixed_prior, other_full_size_slabs, pretraining_frames,
                                          pretraining_structures, prior_curvature, prior_force_error,
                                          rattle_free_metal, relax_with_mixed_prior, tilt_molecule,
                                          tilted_molecule_frames)
from umlip_helpers.active.uncertainty import DescriptorDistance, spearman_correlation
from umlip_helpers.errors import UmlipError
from umlip_helpers.io import atomic_write_json, provenance, rows_to_resume
from umlip_helpers.parents import emt_parent


def cu_slab_with_o():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.set_constraint(FixAtoms(indices=[atom.index for atom in slab if atom.tag == 3]))
    return slab


@pytest.fixture(scope="module")
def cu_o_runs(sevennet0):
    slab = cu_slab_with_o()
    baseline = parent_relax(slab, emt_parent(), fmax=0.03)
    active = relax_active(slab, sevennet0, emt_parent(), fmax=0.03, progress=False)
    return slab, baseline, active


@pytest.mark.slow
def test_online_learner_reaches_parent_minimum_with_fewer_parent_calls(cu_o_runs):
    _, baseline, active = cu_o_runs
    assert baseline["converged"]
    assert active.converged
    assert active.final_parent_energy_ev == pytest.approx(baseline["final_energy_ev"], abs=0.02)
    assert active.n_parent_calls < baseline["n_parent_calls"]
    assert sum(active.is_parent_call) == active.n_parent_calls
    assert len(active.parent_call_reasons) == active.n_parent_calls and active.parent_call_reasons[0] == "start"
    assert set(active.parent_call_reasons[1:]) <= {"surrogate converged", "k steps", "trust radius"}
    assert active.n_surrogate_steps == len(active.is_parent_call) - active.n_parent_calls
    assert active.parent_seconds > 0 and active.surrogate_seconds > 0 and active.training_seconds > 0
    # one prediction of each uncertainty signal per parent call after the first, beside the true error there
    signals = (active.committee_force_std_ev_per_angstrom, active.descriptor_q_score,
               active.gp_force_std_ev_per_angstrom, active.true_force_error_ev_per_angstrom)
    assert {len(signal) for signal in signals} == {active.n_parent_calls - 1}
    assert all(np.isfinite(signal).all() and (np.asarray(signal) > 0).all() for signal in signals)


@pytest.mark.slow
def test_final_point_is_parent_verified(cu_o_runs):
    slab, _, active = cu_o_runs
    assert active.is_parent_call[-1]
    final = slab.copy()
    final.positions = active.positions_angstrom[-1]
    final.calc = EMT()
    assert final.get_potential_energy() == pytest.approx(active.final_parent_energy_ev, abs=1e-9)
    assert constrained_fmax(final, final.get_forces(apply_constraint=False)) <= 0.03
    assert active.final_parent_fmax_ev_per_angstrom <= 0.03
    record = active.to_dict()
    assert record["provenance"]["parameters"]["parent"]["name"] == "emt"
    json.dumps(record)  # JSON-able


class FlakyDFT:
    """EMT that fails like an SCF crash on its third call."""

    def __init__(self):
        self.calls = 0

    def __call__(self, atoms):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("SCF did not converge")
        return EMT()


@pytest.mark.slow
def test_parent_failure_keeps_the_trajectory(sevennet0, tmp_path):
    out = tmp_path / "partial.json"
    with pytest.raises(ActiveLearningFailed, match="SCF did not converge.*after 2 parent calls") as caught:
        relax_active(cu_slab_with_o(), sevennet0, FlakyDFT(), k=3, progress=False, trajectory_json=out)
    partial = caught.value.result
    assert partial.n_parent_calls == 2
    assert not partial.converged
    assert partial.is_parent_call[0] and len(partial.is_parent_call) == len(partial.positions_angstrom) > 2
    saved = json.loads(out.read_text())
    assert saved["n_parent_calls"] == 2 and saved["stop_reason"].startswith("parent failed")
    assert len(saved["energies_ev"]) == len(partial.energies_ev)


def test_readout_fit_beats_base_model_on_fitted_frames(sevennet0):
    frames = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.1, seed=seed)
        atoms.calc = EMT()
        frames.append((atoms, atoms.get_potential_energy(), atoms.get_forces()))
    surrogate = OnlineSurrogate(sevennet0, rank=8, ridge=1e-3, committee_size=0, seed=0, correction="none")
    for atoms, energy, forces in frames:
        surrogate.add_parent_frame(atoms, energy, forces)
    for frame in surrogate.frames:
        base_rmse = np.sqrt(((frame.base_forces - frame.forces) ** 2).mean())
        fitted_energy, fitted_forces = predict(frame, surrogate.coefficients, surrogate.offset_per_atom)
        fit_rmse = np.sqrt(((fitted_forces - frame.forces) ** 2).mean())
        assert fit_rmse < 0.7 * base_rmse
    # the fitted readout, loaded into the model, reproduces the closed-form prediction
    atoms, energy, forces = frames[0]
    direct = surrogate.readout.evaluate(atoms)
    np.testing.assert_allclose(direct.forces, predict(surrogate.frames[0], surrogate.coefficients, 0.0)[1], atol=1e-3)
    assert abs(fitted_energy - frames[-1][1]) < abs(surrogate.frames[-1].base_energy_ev
                                                     + surrogate.offset_per_atom * len(atoms) - frames[-1][1]) + 1e-6


def test_descriptor_distance_flags_unseen_environments(sevennet0):
    surrogate = OnlineSurrogate(sevennet0, rank=8, ridge=1e-3, committee_size=0, seed=0, correction="none")
    readout = surrogate.readout
    seen = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    nearby = seen.copy()
    seen.rattle(0.05, seed=2)
    nearby.rattle(0.05, seed=3)
    unseen = fcc111("Cu", (2, 2, 2), vacuum=5.0)  # surface atoms: new environments
    distance = DescriptorDistance(readout.evaluate(seen).atom_features)
    assert distance.score(readout.evaluate(unseen).atom_features) > 10 * distance.score(
        readout.evaluate(nearby).atom_features)


def test_spearman_correlation_ranks_finite_points_only():
    # ranks (1,2,3,4) against (1,3,2,4): 1 - 6*(0+1+1+0)/(4*15) = 0.8; the NaN row is dropped
    assert spearman_correlation([1.0, 2.0, 3.0, 4.0, np.nan], [0.1, 3.0, 2.0, 40.0, 5.0]) == pytest.approx(0.8)
    assert spearman_correlation([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx(-1.0)
    assert spearman_correlation([1.0, 2.0, np.inf], [1.0, 2.0, 3.0]) is None
    assert spearman_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_full_benchmark_set_is_finetuna_sized():
    systems = dict(benchmark_systems("full"))
    assert len(systems) >= 20
    sizes = [len(atoms) for atoms in systems.values()]
    assert min(sizes) >= 31 and max(sizes) <= 38
    for name, atoms in systems.items():
        if "vacancy" in name:
            continue
        fixed = atoms.constraints[0].get_indices()
        assert set(atoms.get_tags()[fixed]) == {3, 4}, name  # the bottom two of four layers
    assert len(dict(benchmark_systems("small"))) == len(systems)
    with pytest.raises(ValueError, match="profile must be"):
        list(benchmark_systems("huge"))


@pytest.mark.parametrize("adsorbate, binding", [("CO", "C"), ("OH", "O"), ("O", "O")])
def test_adsorbates_bind_through_the_right_atom(adsorbate, binding):
    slab = adsorbate_slab("Cu", "111", adsorbate)
    metal_top = max(a.position[2] for a in slab if a.symbol == "Cu")
    lowest = min((a for a in slab if a.symbol != "Cu"), key=lambda a: a.position[2])
    assert lowest.symbol == binding
    assert lowest.position[2] - metal_top == pytest.approx(1.8 if len(adsorbate) == 2 else 1.5)


def test_rattle_moves_only_free_metal_atoms():
    slab = adsorbate_slab("Pt", "100", "CO", (3, 3, 4), fixed_layers=2)
    moved = rattle_free_metal(slab.copy(), 0.1, seed=0)
    shift = np.linalg.norm(moved.positions - slab.positions, axis=1)
    metal = np.array([s in METALS for s in slab.get_chemical_symbols()])
    free = np.ones(len(slab), dtype=bool)
    free[slab.constraints[0].get_indices()] = False
    assert np.all(shift[~free | ~metal] == 0.0)  # fixed layers and the adsorbate keep their geometry
    assert np.all(shift[free & metal] > 0.0) and 0.05 < shift[free & metal].mean() < 0.3


def test_parent_only_baselines_count_every_parent_call():
    class CountingEMT(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            CountingEMT.calls += 1
            super().calculate(*args, **kwargs)

    results = {}
    for optimizer in ("BFGS", "GPMin"):
        CountingEMT.calls = 0
        results[optimizer] = parent_relax(cu_slab_with_o(), CountingEMT(), fmax=0.03, optimizer=optimizer)
        assert results[optimizer]["converged"] and results[optimizer]["final_fmax_ev_per_angstrom"] <= 0.03
        assert results[optimizer]["n_parent_calls"] == CountingEMT.calls
    assert results["GPMin"]["final_energy_ev"] == pytest.approx(results["BFGS"]["final_energy_ev"], abs=0.02)
    with pytest.raises(ValueError, match="optimizer must be"):
        parent_relax(cu_slab_with_o(), EMT(), optimizer="FIRE")


def test_bad_arguments_are_rejected(sevennet0):
    with pytest.raises(ValueError, match="query must be"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), query="every_step")
    with pytest.raises(ValueError, match="k must be"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), k=0)
    with pytest.raises(ValueError, match="first_parent_call"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), first_parent_call="end")
    with pytest.raises(ValueError, match="trusted_prior_residual must be"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), trusted_prior_residual=-0.25)
    with pytest.raises(ValueError, match="prior_reach_angstrom must be"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), prior_reach_angstrom=0.0)
    with pytest.raises(ValueError, match="min_stiffness_ev_per_angstrom2 must be"):
        relax_active(cu_slab_with_o(), sevennet0, emt_parent(), min_stiffness_ev_per_angstrom2=0.0)
    with pytest.raises(ValueError, match="weight must lie"):
        mixed_prior(sevennet0, 1.5)


def test_min_stiffness_bounds_every_surrogate_step_and_still_ends_parent_verified(sevennet0):
    """A stiffness so large that the harmonic bound is its 0.01 Å floor: no surrogate step (nor a return to the
    last accepted point after a rejected segment) moves an atom further than two floors; without it they do."""
    prior = mixed_prior(sevennet0, 0.3)

    def largest_step(result):
        return np.linalg.norm(np.diff(result.positions_angstrom, axis=0), axis=2).max()

    bounded = relax_active(cu_slab_with_o(), prior, emt_parent(), update="none", progress=False,
                           min_stiffness_ev_per_angstrom2=1e3)
    assert bounded.converged and bounded.is_parent_call[-1] and bounded.final_parent_fmax_ev_per_angstrom <= 0.03
    assert largest_step(bounded) <= 0.02 + 1e-9
    assert "step bound" in bounded.parent_call_reasons
    free = relax_active(cu_slab_with_o(), prior, emt_parent(), update="none", progress=False)
    assert largest_step(free) > 0.02
    assert "step bound" not in free.parent_call_reasons
    assert abs(bounded.final_parent_energy_ev - free.final_parent_energy_ev) < 0.02


@pytest.mark.slow
def test_cli_relax_active_writes_json(tmp_path):
    from ase.io import write

    from umlip_helpers.cli import main

    structure = tmp_path / "cu_rattled.xyz"
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=4)
    write(structure, atoms)
    out = tmp_path / "active.json"
    assert main(["relax-active", "--model", "sevennet-0", "--device", "cpu", "--parent", "emt",
                 "--structure", str(structure), "--fmax", "0.05", "--k", "5", "--correction", "secant",
                 "--first-parent-call", "prior_minimum", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["provenance"]["parameters"]["k"] == 5
    assert record["provenance"]["parameters"]["correction"] == "secant"
    assert record["provenance"]["parameters"]["first_parent_call"] == "prior_minimum"
    assert not record["is_parent_call"][0]  # the start was relaxed on the model before the first parent call
    assert record["converged"] and record["final_parent_fmax_ev_per_angstrom"] <= 0.05
    assert record["is_parent_call"][-1] and record["n_parent_calls"] >= 1


def parent_points_near(atoms, n: int):
    points = []
    for seed in range(n):
        moved = atoms.copy()
        moved.rattle(0.05, seed=seed)
        moved.calc = EMT()
        points.append((moved, moved.get_potential_energy(), moved.get_forces(apply_constraint=False)))
    return points


def surrogate_forces(surrogate, atoms):
    probe = atoms.copy()
    probe.calc = surrogate
    return probe.get_forces(apply_constraint=False)


@pytest.mark.slow
def test_corrections_reproduce_the_parent_points(sevennet0):
    """GP: parent forces at every parent point; anchor + secant: at the newest and the one before; the fit alone
    at none of them."""
    points = parent_points_near(cu_slab_with_o(), 3)
    surrogates = {kind: OnlineSurrogate(sevennet0, rank=2, ridge=1e-2, committee_size=0, seed=0, correction=kind)
                  for kind in ("gp", "secant", "anchor", "none")}
    for surrogate in surrogates.values():
        for moved, energy, forces in points:
            surrogate.add_parent_frame(moved, energy, forces)
    for moved, energy, forces in points:
        np.testing.assert_allclose(surrogate_forces(surrogates["gp"], moved), forces, atol=0.02)
    for moved, energy, forces in points[1:]:
        np.testing.assert_allclose(surrogate_forces(surrogates["secant"], moved), forces, atol=1e-4)
    np.testing.assert_allclose(surrogate_forces(surrogates["anchor"], points[2][0]), points[2][2], atol=1e-4)
    assert np.abs(surrogate_forces(surrogates["anchor"], points[1][0]) - points[1][2]).max() > 1e-2
    far = points[0][0].copy()
    far.positions[-1] += [0.0, 0.0, 2.0]  # 5 length scales from every parent point: the GP adds nothing
    np.testing.assert_allclose(surrogate_forces(surrogates["gp"], far), surrogate_forces(surrogates["none"], far),
                               atol=1e-4)
    with pytest.raises(ValueError, match="correction must be"):
        OnlineSurrogate(sevennet0, rank=2, ridge=1e-2, committee_size=0, seed=0, correction="kriging")


@pytest.mark.slow
def test_chgnet_surrogate_falls_back_to_the_finetuning_engine(chgnet):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=4)
    baseline = parent_relax(atoms, emt_parent(), fmax=0.05)
    active = relax_active(atoms, chgnet, emt_parent(), fmax=0.05, progress=False, finetune_epochs=5)
    assert active.provenance["parameters"]["update"] == "finetune"  # CHGNet has no closed-form readout
    assert active.converged and active.final_parent_fmax_ev_per_angstrom <= 0.05
    assert active.final_parent_energy_ev == pytest.approx(baseline["final_energy_ev"], abs=0.02)
    assert active.training_seconds > 0 and active.is_parent_call[-1]


def test_any_calculator_serves_as_a_fixed_prior():
    """A plain ASE calculator has no readout to refit: ``update="auto"`` keeps it fixed and the GP learns the rest.
    EMT itself is an exact prior; EMT plus a Morse pair term is a wrong one."""
    from ase.calculators.mixing import SumCalculator
    from ase.calculators.morse import MorsePotential

    slab = rattle_free_metal(cu_slab_with_o(), 0.05)
    baseline = parent_relax(slab, emt_parent(), fmax=0.03)
    exact = relax_active(slab, EMT(), emt_parent(), fmax=0.03, progress=False)
    assert exact.provenance["parameters"]["update"] == "none"
    assert exact.converged and exact.is_parent_call[-1]
    assert exact.n_parent_calls <= baseline["n_parent_calls"] // 2
    # an exact prior agrees with the parent at the start, so it is trusted at once: the start and the verified end
    assert exact.n_parent_calls == 2
    # relaxing on the prior first saves the start call: an exact prior needs only the verified minimum
    prior_first = relax_active(slab, EMT(), emt_parent(), fmax=0.03, progress=False, first_parent_call="prior_minimum")
    assert prior_first.n_parent_calls == 1 and prior_first.converged
    assert prior_first.parent_call_reasons == ["prior minimum"]
    # a short prior reach calls the parent part-way, where the prior alone has moved an atom 0.02 Å
    part_way = relax_active(slab, EMT(), emt_parent(), fmax=0.03, progress=False, first_parent_call="prior_minimum",
                            prior_reach_angstrom=0.02)
    assert part_way.converged and part_way.parent_call_reasons[0] == "prior reach"
    first_call = part_way.is_parent_call.index(True)
    moved = np.linalg.norm(part_way.positions_angstrom[first_call] - slab.positions, axis=1).max()
    assert 0.02 <= moved < np.linalg.norm(prior_first.positions_angstrom[-1] - slab.positions, axis=1).max()
    assert prior_first.is_parent_call.index(True) == len(prior_first.is_parent_call) - 1
    np.testing.assert_array_equal(prior_first.positions_angstrom[0], slab.positions)
    start = slab.copy()
    start.calc = EMT()
    assert prior_first.energies_ev[0] == pytest.approx(start.get_potential_energy(), abs=1e-9)  # the parent's scale
    assert prior_first.final_parent_energy_ev == pytest.approx(baseline["final_energy_ev"], abs=0.02)
    fixed_rules = relax_active(slab, EMT(), emt_parent(), fmax=0.03, progress=False, k_grows_with_trust=False,
                               trusted_prior_residual=None)
    assert fixed_rules.n_parent_calls > exact.n_parent_calls
    assert exact.final_parent_energy_ev == pytest.approx(baseline["final_energy_ev"], abs=0.02)
    wrong = SumCalculator([EMT(), MorsePotential(epsilon=0.05, r0=2.5, rho0=6.0)])
    assert prior_force_error(slab, wrong, EMT())[1] > 0.5  # the prior really differs
    assert prior_force_error(slab, mixed_prior(wrong, 0.0), EMT()) == (0.0, 0.0)
    full_error = prior_force_error(slab, mixed_prior(wrong, 1.0), EMT())
    half_error = prior_force_error(slab, mixed_prior(wrong, 0.5), EMT())
    np.testing.assert_allclose(half_error, 0.5 * np.array(full_error), rtol=1e-9)  # the mix is linear in the weight
    row = relax_with_mixed_prior(slab, wrong, 0.0, baseline)  # weight 0: the parent itself, as ``exact`` above
    assert row["active_parent_calls"] == exact.n_parent_calls and row["prior_force_error_max_ev_per_angstrom"] == 0.0
    assert row["energy_difference_ev"] == pytest.approx(exact.final_parent_energy_ev - baseline["final_energy_ev"])
    approximate = relax_active(slab, wrong, emt_parent(), fmax=0.03, progress=False)
    assert approximate.converged and approximate.final_parent_fmax_ev_per_angstrom <= 0.03
    assert approximate.final_parent_energy_ev == pytest.approx(baseline["final_energy_ev"], abs=0.02)
    assert approximate.n_parent_calls < baseline["n_parent_calls"]
    assert approximate.is_parent_call.index(True, 1) <= 11  # no early trust: the first segment stops at k = 10 steps


def test_fraction_within_counts_converged_runs_at_most_the_tolerance_above_the_baseline():
    rows = [{"active_converged": True, "energy_difference_ev": 0.019, "gpmin_converged": False,
             "gpmin_energy_difference_ev": 0.0},
            {"active_converged": True, "energy_difference_ev": -0.4, "gpmin_converged": True,
             "gpmin_energy_difference_ev": 0.021},
            {"active_converged": False, "energy_difference_ev": 0.0, "gpmin_converged": True,
             "gpmin_energy_difference_ev": 0.001},
            {"active_converged": True, "energy_difference_ev": 0.03, "gpmin_converged": True,
             "gpmin_energy_difference_ev": 0.02}]
    assert fraction_within(rows) == 0.5
    assert fraction_within(rows, method="gpmin") == 0.5
    assert fraction_within(rows, tolerance_ev=0.05) == 0.75


def test_pretraining_frames_label_starts_and_parent_minima_of_cells_outside_the_benchmark():
    evaluations = []

    class CountingEMT(EMT):
        def calculate(self, *args, **kwargs):
            evaluations.append(1)
            super().calculate(*args, **kwargs)

    frames, calls = pretraining_frames(CountingEMT, path_frames=2)
    assert len(evaluations) == calls  # the labels are the relaxations' own parent calls
    assert len(frames) == 70 * 4  # every relaxation here takes more than 4 parent calls
    starts, minima = frames[0::4], frames[3::4]
    for frame in frames:
        check = frame.atoms.copy()
        check.calc = EMT()
        assert frame.energy_ev == pytest.approx(check.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(frame.forces_ev_per_angstrom, check.get_forces(apply_constraint=False), atol=1e-9)
    assert all(constrained_fmax(f.atoms, f.forces_ev_per_angstrom) <= 0.03 for f in minima)
    assert all(constrained_fmax(f.atoms, f.forces_ev_per_angstrom) > 0.03 for f in starts)
    sizes = {len(atoms) for _, atoms in benchmark_systems("full")}
    assert not sizes & {len(f.atoms) for f in frames}  # small cells only: no benchmark system is seen in pretraining
    relaxations = [parent_relax(f.atoms, emt_parent(), fmax=0.03)["n_parent_calls"] for f in starts]
    assert calls == sum(relaxations) > len(starts)
    for start, first, second, minimum in zip(*[frames[i::4] for i in range(4)]):  # the path runs downhill
        assert start.energy_ev > first.energy_ev > second.energy_ev > minimum.energy_ev
    assert len(pretraining_frames(path_frames=0)[0]) == 140


def test_tilt_molecule_turns_the_bond_about_the_binding_atom():
    for adsorbate, binding in (("CO", "C"), ("OH", "O")):
        upright = adsorbate_slab("Pt", "111", adsorbate)
        tilted = tilt_molecule(upright.copy(), adsorbate, 30.0, azimuth_rad=1.0)
        (low,) = [i for i in (-2, -1) if upright[i].symbol == binding]
        high = -3 - low
        np.testing.assert_allclose(np.delete(tilted.positions, high, 0), np.delete(upright.positions, high, 0))
        before, after = (a.positions[high] - a.positions[low] for a in (upright, tilted))
        angle = np.degrees(np.arccos(before @ after / np.linalg.norm(before) / np.linalg.norm(after)))
        assert angle == pytest.approx(30.0) and np.linalg.norm(after) == pytest.approx(np.linalg.norm(before))


@pytest.mark.slow
def test_tilted_molecule_frames_leave_the_upright_saddle_for_a_lower_minimum():
    frames, calls, runs = tilted_molecule_frames(emt_parent, starts=1, path_points=3)
    names = [name for name, _ in other_full_size_slabs() if name.endswith(("+CO", "+OH"))]
    assert [r["system"] for r in runs] == names and len(frames) == 3 * len(names)
    assert calls == sum(r["parent_calls"] for r in runs)
    for frame in frames[::7]:
        check = frame.atoms.copy()
        check.calc = EMT()
        assert frame.energy_ev == pytest.approx(check.get_potential_energy(), abs=1e-9)
    # Pt(111)+CO: parent BFGS from the same start left upright stops at the saddle, well above the tilted minimum
    index = [name for name, _ in other_full_size_slabs()].index("Pt(111)+CO")
    upright = rattle_free_metal(other_full_size_slabs()[index][1], 0.1, seed=TILTED_SEED + 10 * index)
    tilted_end = runs[names.index("Pt(111)+CO")]["final_energy_ev"]
    assert tilted_end < parent_relax(upright, emt_parent(), fmax=0.03)["final_energy_ev"] - 0.1


def test_full_size_pretraining_structures_are_benchmark_sized_but_not_benchmark_systems():
    def key(atoms):
        return atoms.get_chemical_formula(), tuple(np.round(atoms.cell.lengths(), 3)), tuple(atoms.pbc)

    benchmark = [atoms for _, atoms in benchmark_systems("full")]
    structures = pretraining_structures("full")
    assert len(structures) == 45
    assert {len(a) for a in structures} <= {len(a) for a in benchmark}
    assert not {key(a) for a in structures} & {key(a) for a in benchmark}
    assert len({key(a) for a in structures}) == 45
    with pytest.raises(ValueError, match="small or full"):
        pretraining_structures("huge")


def test_tuning_systems_are_the_pretraining_slabs_rattled_afresh_and_not_benchmark_systems():
    tuning = list(benchmark_systems("tuning"))
    assert len(tuning) == 45 and len({name for name, _ in tuning}) == 45
    assert not {name for name, _ in tuning} & {name for name, _ in benchmark_systems("full")}
    pretraining_starts = [rattle_free_metal(a, 0.1, seed=1000 + i)
                          for i, a in enumerate(pretraining_structures("full"))]
    for (name, start), structure, pretraining_start in zip(tuning, pretraining_structures("full"), pretraining_starts):
        assert start.get_chemical_formula() == structure.get_chemical_formula()
        moved = np.linalg.norm(start.positions - structure.positions, axis=1)
        free_metal = free_atoms(start) & np.isin(start.get_chemical_symbols(), METALS)
        assert moved[free_metal].min() > 0 and moved[~free_metal].max() == 0  # only the free metal is rattled
        assert np.abs(start.positions - pretraining_start.positions).max() > 0.05  # not a start pretraining saw


def test_prior_curvature_measures_how_a_stiffer_prior_misses_the_parents_hessian():
    from ase.calculators.mixing import LinearCombinationCalculator

    slab = adsorbate_slab("Cu", "111", "O")
    slab.positions = parent_relax(slab, emt_parent())["positions_angstrom"]
    exact = prior_curvature(slab, EMT(), emt_parent())
    assert exact["newton_contraction"] < 1e-6 and exact["relative_hessian_error"] < 1e-6
    stiffer = prior_curvature(slab, LinearCombinationCalculator([EMT()], [1.25]), emt_parent(), n_soft=4)
    np.testing.assert_allclose(stiffer["prior_over_parent_soft_curvature"], 1.25, rtol=1e-6)
    assert stiffer["newton_contraction"] == pytest.approx(0.2, rel=1e-6)  # 1 - 1/1.25 of the force is left
    assert stiffer["relative_hessian_error"] == pytest.approx(0.25, rel=1e-6)
    softest = stiffer["parent_soft_eigenvalues_ev_per_angstrom2"]
    assert len(softest) == 4 and softest == sorted(softest) and softest[0] > 0  # a minimum: no negative curvature
    vacancy = bulk_vacancy("Cu")  # nothing held: the rigid translations are left out, not divided by
    vacancy.positions = parent_relax(vacancy, emt_parent())["positions_angstrom"]
    bulk_stiffer = prior_curvature(vacancy, LinearCombinationCalculator([EMT()], [1.25]), emt_parent())
    assert bulk_stiffer["newton_contraction"] == pytest.approx(0.2, rel=1e-6)
    assert bulk_stiffer["parent_soft_eigenvalues_ev_per_angstrom2"][0] > 0.05


def test_an_interrupted_benchmark_resumes_only_with_the_same_model_and_settings(tmp_path):
    out = tmp_path / "benchmark.json"
    assert rows_to_resume(out, provenance(EMT(), fmax=0.03)) == {}
    name, atoms = next(iter(benchmark_systems("tuning")))
    row = {"system": name, "baseline_parent_calls": parent_relax(atoms, emt_parent(), fmax=0.03)["n_parent_calls"]}
    atomic_write_json(out, {"provenance": provenance(EMT(), fmax=0.03, systems="tuning"), "systems": [row]})
    assert rows_to_resume(out, provenance(EMT(), fmax=0.03, systems="tuning")) == {name: row}
    with pytest.raises(UmlipError, match=f"{out} belongs to another run: parameters.fmax differ"):
        rows_to_resume(out, provenance(EMT(), fmax=0.05, systems="tuning"))
    with pytest.raises(UmlipError, match="model.family, model.name, model.version differ"):
        rows_to_resume(out, provenance(emt_parent(), fmax=0.03, systems="tuning"))
    # both values, to see which is wanted
    with pytest.raises(UmlipError, match=r"saved parameters.fmax=0\.03, this run parameters.fmax=0\.05"):
        rows_to_resume(out, provenance(EMT(), fmax=0.05, systems="tuning"))
    out.write_text(out.read_text()[:100])  # cut short by hand: atomic writes never leave this
    with pytest.raises(UmlipError, match=f"{out}: cannot resume, it is not JSON"):
        rows_to_resume(out, provenance(EMT(), fmax=0.03, systems="tuning"))
