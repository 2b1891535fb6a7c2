"""The shipped GPAW PBE Ni frames (data/ni/gpaw_pbe): complete, regenerable from the script, physically plausible,
and reproduced by a fresh GPAW single point with the recorded settings."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
from ase import units

from conftest import DATA, ROOT, require_installed
from umlip_helpers.errors import DataValidationError
from umlip_helpers.labelling import FRAME_FIELDS, frame_path, label_frames, read_frame

NI = DATA / "ni" / "gpaw_pbe"
FRAMES = NI / "frames"


def _script():
    spec = importlib.util.spec_from_file_location("label_ni_dft", ROOT / "scripts" / "label_ni_dft.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def provenance():
    return json.loads((NI / "provenance.json").read_text())


@pytest.fixture(scope="module")
def frames():
    found = {path.stem: read_frame(path) for path in sorted(FRAMES.glob("*.extxyz"))}
    assert found, f"no labelled frames in {FRAMES}"
    return found


def test_every_frame_parses_with_every_field_and_is_in_the_plan(frames, provenance):
    for name, atoms in frames.items():
        assert set(FRAME_FIELDS) <= set(atoms.calc.results), name
        assert atoms.info["name"] == name
        planned = provenance["frames"][name]
        assert atoms.info["kind"] == planned["kind"] and len(atoms) == planned["n_atoms"], name
        assert np.isfinite(atoms.calc.results["forces"]).all() and atoms.calc.results["stress"].shape == (6,)


def test_shipped_frames_are_the_structures_the_script_generates(frames, script):
    planned = script.plan()
    for name, atoms in frames.items():
        expected = planned[name][0]
        np.testing.assert_allclose(atoms.cell.array, expected.cell.array, atol=1e-8, err_msg=name)
        np.testing.assert_allclose(atoms.positions, expected.positions, atol=1e-8, err_msg=name)


def test_split_covers_every_planned_frame_once(provenance):
    split = provenance["split"]
    names = [name for part in split.values() for name in part]
    assert sorted(names) == sorted(provenance["frames"]) and len(names) == len(set(names))
    assert split["train"] and not set(split["train"]) & set(split["property_test"])
    assert all(provenance["frames"][name]["kind"] == "rattled" for name in split["train"])


def test_physics_is_plausible(frames):
    for name, atoms in frames.items():
        results = atoms.calc.results
        net = np.abs(results["forces"].sum(axis=0)).max()
        assert net < 0.01, f"{name}: forces sum to {net:.4f} eV/Å"
        moment = results["magmom"] / len(atoms)
        assert 0.4 < moment < 0.8, f"{name}: {moment:.3f} μB per atom is not ferromagnetic Ni"
        assert -7.5 < results["energy"] / len(atoms) < -6.0, name
        assert results["free_energy"] < results["energy"] + 1e-9, f"{name}: F = E - TS must lie below E(σ->0)"


def test_eos_frames_give_a0_within_one_percent_of_experiment_and_the_recorded_a0(frames, script):
    from ase.eos import EquationOfState

    eos = {name: atoms for name, atoms in frames.items() if atoms.info["kind"] == "eos"}
    assert len(eos) == 7, f"expected the 7 EOS frames, found {sorted(eos)}"
    volumes = [atoms.get_volume() for atoms in eos.values()]
    free_energies = [atoms.calc.results["free_energy"] for atoms in eos.values()]  # stress is its derivative
    v0, _, b0 = EquationOfState(volumes, free_energies, eos="birchmurnaghan").fit()
    a0 = (4 * v0) ** (1 / 3)
    assert abs(a0 / 3.52 - 1) < 0.01, a0
    assert abs(a0 - script.A0_PBE) < 5e-4, f"the EOS frames give a0 = {a0:.5f} Å; the script records {script.A0_PBE}"
    assert 150 < b0 / units.GPa < 250
    order = np.argsort(volumes)
    pressures = np.array([-atoms.calc.results["stress"][:3].mean() / units.GPa for atoms in eos.values()])[order]
    assert np.all(np.diff(pressures) < 0), "pressure must fall as the volume grows"
    cubic = np.polynomial.Polynomial.fit(np.asarray(volumes)[order], pressures, 3)
    zero_pressure_volume = min(cubic.roots().real, key=lambda v: abs(v - v0))
    # the stress carries the Pulay error of a finite basis (ecut 500 -> 600 eV moves it 0.47 GPa, PROVENANCE.md):
    # 0.5 GPa is 3 mÅ of a0 at B0 ~ 200 GPa
    assert abs((4 * zero_pressure_volume) ** (1 / 3) - a0) < 5e-3, "the stress must vanish near the fitted a0"


def test_read_frame_names_the_file_and_the_missing_field(tmp_path, frames):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = next(iter(frames.values())).copy()
    atoms.calc = SinglePointCalculator(atoms, energy=-7.0, forces=np.zeros((len(atoms), 3)))
    path = tmp_path / "partial.extxyz"
    write(path, atoms)
    with pytest.raises(DataValidationError, match="partial.extxyz.*stress"):
        read_frame(path)
    with pytest.raises(ValueError, match="frame name"):
        frame_path(tmp_path, "a/b")


def test_label_frames_writes_each_frame_and_skips_finished_ones(tmp_path, script, emt):
    from ase.build import bulk

    calls = []

    def factory(atoms):
        calls.append(len(atoms))
        return emt

    structures = {"one": bulk("Ni", "fcc", a=3.5), "two": bulk("Ni", "fcc", a=3.6, cubic=True)}
    label_frames({"one": structures["one"]}, factory, tmp_path, progress=False)
    assert calls == [1]
    paths = label_frames(structures, factory, tmp_path, info={"two": {"kind": "test"}}, progress=False)
    assert calls == [1, 4], "the finished frame must not be labelled again"
    two = read_frame(paths[1], require=("energy", "free_energy", "forces", "stress"))
    assert two.info["kind"] == "test" and not list(tmp_path.glob(".*.tmp"))


#: the most a frame re-labelled by the test may have cost when it was labelled (one shared core)
MAX_RELABEL_SECONDS = 900


@pytest.mark.slow
@pytest.mark.gpaw
def test_fresh_gpaw_single_point_reproduces_the_cheapest_frames(frames, script, provenance):
    require_installed("GPAW", importlib.util.find_spec("gpaw") is not None, "scripts/install_gpaw.sh .venv")
    settings = provenance["settings"]
    assert settings["ecut_ev"] == script.SETTINGS.ecut_ev
    assert settings["kpts_density_per_inv_angstrom"] == script.SETTINGS.kpts_density_per_inv_angstrom
    factory = script.parent()
    # a frame with non-zero forces too, but only a cheap one: the slab and GSF columns took about an hour each
    with_forces = [n for n, a in frames.items() if np.abs(a.calc.results["forces"]).max() > 0.01
                   and a.info["label_seconds"] <= MAX_RELABEL_SECONDS]
    cheapest_with_forces = min(with_forces, key=lambda n: frames[n].info["label_seconds"]) if with_forces else None
    for name in ["eos_dv+0pct", cheapest_with_forces]:
        if name is None:
            continue
        shipped = frames[name]
        atoms = shipped.copy()
        atoms.calc = factory(atoms)
        assert math.isclose(atoms.get_potential_energy(), shipped.calc.results["energy"], abs_tol=2e-4 * len(atoms))
        np.testing.assert_allclose(atoms.get_forces(), shipped.calc.results["forces"], atol=2e-3, err_msg=name)
        np.testing.assert_allclose(atoms.get_stress() / units.GPa, shipped.calc.results["stress"] / units.GPa,
                                   atol=0.05, err_msg=name)


@pytest.mark.gpaw
def test_gpaw_drops_the_point_group_only_where_it_would_blow_up_the_grid(script):
    """At u = 1 a symmetry operation of the tilted column ties the in-plane axes to the 18 Å one, so GPAW would use a
    96^3 grid instead of 14x14x96 (about 50x the cost); the factory labels that frame without the point group."""
    require_installed("GPAW", importlib.util.find_spec("gpaw") is not None, "scripts/install_gpaw.sh .venv")
    from umlip_helpers.parents import point_group_keeps_grid

    columns = script.stacking_fault_frames(9, 7)
    keeps = {name: point_group_keeps_grid(atoms, script.SETTINGS.ecut_ev) for name, (atoms, _) in columns.items()}
    assert keeps == {name: name != "gsf9_u1.000" for name in columns}
    factory = script.parent()
    symmetry = {name: factory(columns[name][0].copy()).parameters.todict().get("symmetry")
                for name in ("gsf9_u1.000", "gsf9_u0.500")}
    assert symmetry == {"gsf9_u1.000": {"point_group": False}, "gsf9_u0.500": None}
    assert script.point_group_note(columns["gsf9_u1.000"][0])["gpaw_symmetry"].startswith("point group off")
