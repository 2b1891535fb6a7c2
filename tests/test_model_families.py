"""Model families without offline weights: tiny random models of the real architectures, loaded by path.

Each family builds a tiny model in a temporary folder; ``load_calculator(path)`` must recognise the family
from the file alone, give finite energy/forces/stress, forces that are minus the energy gradient, and
(for the equivariant architectures) energies invariant and forces/stress covariant under rotation.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase.build import bulk
from scipy.spatial.transform import Rotation

from umlip_helpers.errors import ModelUnavailable, UnsupportedElements
from umlip_helpers.io import model_info
from umlip_helpers.models import check_elements, get_family, get_spec, load_calculator

ELEMENTS = ("Ni", "Cu")
#: case -> (family, module to import, build_tiny options, load options giving float64 arithmetic so that
#: the symmetry checks can be tight)
CASES = {
    "mace": ("mace", "mace", {}, {"default_dtype": "float64"}),
    "fairchem": ("fairchem", "fairchem.core", {}, {"dtype": "float64"}),
    "upet": ("upet", "metatrain", {}, {}),
    "upet-ckpt": ("upet", "metatrain", {"form": "checkpoint"}, {}),
    "nequip": ("nequip", "nequip", {"architecture": "nequip"}, {}),
    "allegro": ("nequip", "allegro", {"architecture": "allegro"}, {}),
}
#: PET is not rotation-equivariant by construction: it learns the symmetry from rotated training data
NOT_EQUIVARIANT = ("upet",)


def nickel_copper(seed: int = 1):
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True) * (2, 1, 1)
    atoms.symbols[[0, 5]] = "Cu"
    atoms.rattle(0.08, seed=seed)
    return atoms


@pytest.fixture(scope="module", params=list(CASES))
def tiny(request, tmp_path_factory):
    """(family name, calculator) for a freshly built tiny model, loaded with no family given."""
    family, module, build_options, load_options = CASES[request.param]
    pytest.importorskip(module)
    folder = tmp_path_factory.mktemp(request.param)
    path = get_family(family).build(folder / "tiny", ELEMENTS, seed=0, **build_options)
    calc = load_calculator(path, device="cpu", **load_options)
    assert model_info(calc).family == family
    return family, calc


def evaluate(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces().copy(), atoms.get_stress(voigt=False).copy()


@pytest.mark.slow
def test_tiny_model_gives_finite_conservative_forces(tiny):
    family, calc = tiny
    atoms = nickel_copper()
    energy, forces, stress = evaluate(atoms, calc)
    assert np.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(stress))
    assert forces.shape == (len(atoms), 3)
    assert np.abs(forces).max() > 1e-6, "a rattled cell should feel forces"
    step = 1e-4
    shifted = [atoms.copy() for _ in range(2)]
    shifted[0].positions[3, 1] += step
    shifted[1].positions[3, 1] -= step
    slope = (evaluate(shifted[0], calc)[0] - evaluate(shifted[1], calc)[0]) / (2 * step)
    assert forces[3, 1] == pytest.approx(-slope, abs=1e-5, rel=1e-3)


@pytest.mark.slow
def test_rotation_equivariance(tiny):
    family, calc = tiny
    if family in NOT_EQUIVARIANT:
        pytest.skip(f"{family}: PET is not rotation-equivariant by construction (see the upet module)")
    atoms = nickel_copper()
    rotation = Rotation.random(random_state=7).as_matrix()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell[:] @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T
    energy, forces, stress = evaluate(atoms, calc)
    energy_r, forces_r, stress_r = evaluate(rotated, calc)
    assert energy_r == pytest.approx(energy, abs=1e-5)
    np.testing.assert_allclose(forces_r, forces @ rotation.T, atol=1e-5)
    np.testing.assert_allclose(stress_r, rotation @ stress @ rotation.T, atol=1e-5)


@pytest.mark.slow
def test_translation_and_permutation_invariance(tiny):
    family, calc = tiny
    atoms = nickel_copper()
    moved = atoms.copy()
    moved.positions += [0.31, -0.17, 0.52]
    order = np.random.default_rng(3).permutation(len(atoms))
    permuted = atoms[order]
    energy, forces, _ = evaluate(atoms, calc)
    energy_m, forces_m, _ = evaluate(moved, calc)
    energy_p, forces_p, _ = evaluate(permuted, calc)
    assert energy_m == pytest.approx(energy, abs=1e-5)
    assert energy_p == pytest.approx(energy, abs=1e-5)
    np.testing.assert_allclose(forces_m, forces, atol=1e-5)
    np.testing.assert_allclose(forces_p, forces[order], atol=1e-5)


@pytest.mark.slow
def test_elements_outside_the_model_are_refused(tiny):
    family, calc = tiny
    assert set(ELEMENTS) <= get_family(family).supported_elements(calc)
    atoms = nickel_copper()
    atoms.symbols[2] = "Au"
    with pytest.raises(UnsupportedElements, match="Au"):
        check_elements(atoms, calc, where="NiCuAu test cell")


@pytest.mark.slow
def test_torch_module_drives_the_calculator(tiny):
    """The trainer updates ``torch_module(calc)`` in place; the calculator must see the new weights."""
    import torch

    family, calc = tiny
    module = get_family(family).torch_module(calc)
    head_prefixes = get_family(family).adapter.heads
    assert any(name.startswith(head_prefixes) for name, _ in module.named_modules()), "no head module found"
    parameters = [p for p in module.parameters() if p.is_floating_point()]
    assert sum(p.numel() for p in parameters) > 0
    atoms = nickel_copper()
    before = evaluate(atoms, calc)[0]
    saved = [p.detach().clone() for p in parameters]
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for p in parameters:
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        calc.reset()
        after = evaluate(atoms, calc)[0]
    finally:
        with torch.no_grad():
            for p, value in zip(parameters, saved):
                p.copy_(value)
        calc.reset()
    assert abs(after - before) > 1e-6
    assert evaluate(atoms, calc)[0] == pytest.approx(before, abs=1e-9)


@pytest.mark.parametrize("name", ["mace-mp-0-small", "mace-mp-0-medium", "mace-mp-0-large", "uma-s-1p1",
                                  "pet-mad", "allegro-fm"])
def test_missing_weights_fail_fast_naming_the_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("UMLIP_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = get_spec(name)
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable) as caught:
        load_calculator(name, device="cpu")
    assert time.perf_counter() - start < 5.0
    assert spec.weights_file in str(caught.value)
    assert spec.how_to_get in str(caught.value)


@pytest.mark.slow
def test_pet_loads_after_torch_geometric_patched_torch(tmp_path):
    """sevenn imports torch_geometric, which swaps torch.index_select for a wrapper TorchScript cannot compile;
    a PET model must still build and load afterwards, and the swap must be left as it was."""
    import torch
    import torch_geometric  # noqa: F401  (the import is the point)

    swapped = torch.index_select
    path = get_family("upet").build(tmp_path / "pet.pt", ["Ni", "Cu"], seed=0)
    atoms = bulk("Ni", "fcc", a=3.5, cubic=True)
    atoms.calc = load_calculator(path)
    assert np.isfinite(atoms.get_potential_energy())
    assert torch.index_select is swapped


@pytest.mark.slow
def test_nequip_leaves_process_wide_settings_alone(tmp_path):
    """nequip sets torch's default dtype and e3nn's optimisation defaults for the whole process; building,
    loading and running a nequip model must leave both as they were, or later models break (MACE then
    cannot be pickled)."""
    import e3nn
    import torch

    before = torch.get_default_dtype(), e3nn.get_optimization_defaults()
    path = get_family("nequip").build(tmp_path / "t.nequip.zip", ["Ni", "Cu"], seed=0)
    atoms = bulk("Ni", "fcc", a=3.5, cubic=True)
    atoms.calc = load_calculator(path)
    atoms.get_forces()
    assert (torch.get_default_dtype(), e3nn.get_optimization_defaults()) == before
    get_family("mace").build(tmp_path / "after.model", ["Ni", "Cu"], seed=0)  # pickles the model
