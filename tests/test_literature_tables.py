"""The reference tables in data/references: every literature value names its DOI, every missing row says what was
searched, and every value computed here ("this work") names a committed data directory and the script whose
derivation this test reruns, so the stored numbers are the ones the shipped frames give."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys

import numpy as np
import pytest

from conftest import ROOT
from umlip_helpers.properties import references
from umlip_helpers.properties.references import literature_values

THIS_WORK = re.compile(r"^this work: (?P<data>data/\S+) \((?P<script>scripts/\S+\.py)\)$")


def _rows(files=references.LITERATURE_FILES) -> list[dict]:
    return [r for rows in literature_values(files).values() for r in rows]


def test_defect_and_alloy_rows_cite_or_say_what_was_searched():
    rows = _rows(("ni_defects_alloys_literature.csv",))
    assert rows
    for row in rows:
        if row["value"] is None:
            assert row["method"].startswith("missing") and "searched" in row["method"], row["quantity"]
        else:
            assert "doi:" in row["source"].lower(), row["quantity"]
        assert row["unit"], row["quantity"]


def test_this_work_rows_name_a_committed_data_directory_and_script():
    rows = [r for r in _rows() if r["source"].startswith("this work")]
    assert rows, "ni_gpaw_pbe.csv holds the values computed here"
    for row in rows:
        match = THIS_WORK.match(row["source"])
        assert match, f"{row['quantity']}: a 'this work' source must read 'this work: data/DIR (scripts/NAME.py)'"
        assert (ROOT / match["data"]).is_dir() and (ROOT / match["script"]).is_file(), row["source"]
        assert row["value"] is not None and row["unit"], row["quantity"]
        assert "this work" in row["method"] and "DFT-PBE" in row["method"], row["quantity"]


def test_rigid_and_unrelaxed_values_have_their_own_names():
    """A rigid (unrelaxed) DFT value must never stand under a relaxed quantity's name, where a model's relaxed value
    would be compared with it."""
    relaxed_names = {q for q, *_ in references.COMPARISONS}
    for row in _rows(("ni_gpaw_pbe.csv",)):
        method = row["method"].lower()
        if "rigid" in method or "unrelaxed" in method.replace("unrelaxed c/a", ""):
            assert "rigid" in row["quantity"] or "unrelaxed" in row["quantity"], row["quantity"]
            assert row["quantity"] not in relaxed_names, row["quantity"]


def _script():
    spec = importlib.util.spec_from_file_location("ni_dft_references", ROOT / "scripts" / "ni_dft_references.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _parse(text: str) -> tuple[list[str], list[dict]]:
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    return comments, list(csv.DictReader(line for line in lines if not line.startswith("#")))


def test_gpaw_pbe_table_equals_a_rederivation_from_the_shipped_frames():
    script = _script()
    provenance = json.loads((script.DATA_DIR / "provenance.json").read_text())
    rows, missing = script.derive(script.load_frames(), provenance)
    expected_comments, expected = _parse(script.render(rows, missing))
    comments, stored = _parse(script.OUT_CSV.read_text())
    hint = "data/references/ni_gpaw_pbe.csv is stale: rerun scripts/ni_dft_references.py"
    assert [r["quantity"] for r in stored] == [r["quantity"] for r in expected], hint
    for have, want in zip(stored, expected):
        assert (have["unit"], have["method"], have["source"]) == (want["unit"], want["method"], want["source"]), hint
        last_digit = 10.0 ** -script.DECIMALS[want["unit"]]
        assert float(have["value"]) == pytest.approx(float(want["value"]), abs=1.01 * last_digit), \
            f"{hint} ({have['quantity']})"
    assert comments == expected_comments, hint
    # the headline values the data's provenance states (PROVENANCE.md: free-energy fit 3.5310 Å, 202.5 GPa)
    values = {r["quantity"]: float(r["value"]) for r in stored}
    assert values["a0"] == pytest.approx(provenance["a0_pbe_angstrom"], abs=5e-4)
    assert 150 < values["B0"] < 250 and values["C11"] > values["C12"] > 0 and values["C44"] > 0


def test_rigid_rows_compare_a_models_rigid_values_and_relaxed_rows_its_relaxed_ones(emt):
    from ase.build import bulk

    from umlip_helpers.properties import generalized_stacking_fault

    table = literature_values()
    result = generalized_stacking_fault(bulk("Ni", "fcc", a=3.52, cubic=True), emt, n_layers=9, n_points=3,
                                        fmax=0.05, progress=False)
    rows = {r["property"]: r for r in references.comparison_rows({"stacking_fault": result}, table)}
    assert rows["isf_energy"]["value"] == pytest.approx(result.isf_mj_m2)  # relaxed against the relaxed references
    assert "rigid" not in (rows["isf_energy"]["method"] or "")
    stored = [r for r in table.get("gsf_rigid_u0.500", []) if r["value"] is not None]
    if stored:
        assert rows["gsf_rigid_u0.500"]["value"] == pytest.approx(result.gamma_unrelaxed_mj_m2[1])
        assert rows["gsf_rigid_u0.500"]["reference"] == stored[0]["value"]
    else:
        assert "gsf_rigid_u0.500" not in rows  # no rigid DFT value stored: no row


def test_compared_quantities_all_have_a_row():
    table = literature_values()
    for quantity in ("vacancy_formation_energy", "vacancy_migration_energy", "self_diffusion_activation_energy",
                     "isf_energy", "usf_energy", "surface_energy_111", "surface_energy_100", "surface_energy_110",
                     "sigma3_twin_energy", "sigma5_310_gb_energy", "sigma5_210_gb_energy",
                     "H_adsorption_energy_Ni111", "O_adsorption_energy_Ni111", "Ni3Al_a0", "Ni3Al_C11",
                     "Ni3Al_C12", "Ni3Al_C44", "Ni3Al_formation_enthalpy"):
        assert quantity in table, quantity


def test_rigid_twin_row_reads_the_same_structure_as_the_dft_twin_column(emt):
    """The model's rigid Σ3 value (the boundary scan's unrelaxed energy at the chosen translation) must be the
    energy of the structure the GPAW twin12_sigma3 frame holds: checked with EMT, both at the frames' a0."""
    import numpy as np
    from ase.build import bulk

    from umlip_helpers.properties import grain_boundaries as gb

    spec = importlib.util.spec_from_file_location("label_ni_dft", ROOT / "scripts" / "label_ni_dft.py")
    label = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = label
    spec.loader.exec_module(label)
    frames = label.twin_frame(12)
    twin, perfect = frames["twin12_sigma3"][0], frames["column12_perfect"][0]
    area = float(np.linalg.norm(np.cross(perfect.cell[0], perfect.cell[1])))
    column = (emt.get_potential_energy(twin) - emt.get_potential_energy(perfect)) / (2 * area) * 16021.766208
    result = gb.compute(bulk("Ni", "fcc", a=label.A0_PBE, cubic=True), emt, gb.GrainBoundarySettings(
        boundary="sigma3_111", separation_angstrom=5.0, translation_grid=(2, 2), n_relaxed=1, fmax=0.05,
        progress=False))
    assert result.energy_unrelaxed_mJ_per_m2 == pytest.approx(column, abs=0.01)
    for results in ({"grain_boundaries": [result]}, {"gb_sigma3_111": result}):
        assert references._rigid_twin(results) == pytest.approx(result.energy_unrelaxed_mJ_per_m2)
    assert references._rigid_twin({"grain_boundaries": []}) is None


def test_unrelaxed_vacancy_row_needs_the_32_atom_cell_of_the_dft_frame(emt):
    from ase.build import bulk

    from umlip_helpers.properties import vacancy_formation_energy

    cubic = bulk("Ni", "fcc", a=3.52, cubic=True)
    two = vacancy_formation_energy(cubic, emt, sizes=(2,), fmax=0.05, progress=False)
    assert two.n_atoms == (32,)
    assert references._unrelaxed_vacancy(two) == pytest.approx(two.e_vac_unrelaxed_by_size_ev[0])
    assert references._unrelaxed_vacancy(two) != pytest.approx(two.e_vac_ev)  # EMT's neighbours relax
    three = vacancy_formation_energy(cubic, emt, sizes=(3,), relax_positions=False, progress=False)
    assert references._unrelaxed_vacancy(three) is None  # a 108-atom cell is not the frame's structure


def test_each_derivation_agrees_with_the_packages_own_property_code_on_emt_frames(emt):
    """Every planned frame but the EOS (centred on experiment, not EMT's a0) labelled with EMT, then derived by the
    script: the values must be those the property modules give for the same structures with EMT, so the DFT rows
    mean what the model rows mean."""
    import warnings

    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    from umlip_helpers.properties import generalized_stacking_fault, surface_energies, vacancy_formation_energy
    from umlip_helpers.properties.elastic import elastic_constants
    from umlip_helpers.properties.phonons import phonons

    spec = importlib.util.spec_from_file_location("label_ni_dft", ROOT / "scripts" / "label_ni_dft.py")
    label = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = label
    spec.loader.exec_module(label)
    frames = {}
    for name, (atoms, info) in label.plan().items():
        if info["kind"] in ("eos", "rattled"):
            continue
        atoms = atoms.copy()
        atoms.calc = emt
        energy = atoms.get_potential_energy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=energy, forces=atoms.get_forces(),
                                           stress=atoms.get_stress())
        atoms.info.update(kind=info["kind"], name=name)
        frames[name] = atoms
    script = _script()
    provenance = json.loads((script.DATA_DIR / "provenance.json").read_text())
    rows, missing = script.derive(frames, provenance)
    got = {r["quantity"]: r["value"] for r in rows}
    assert any(line.startswith("a0, B0") for line in missing)  # no EOS frames: said, not invented

    a0 = label.A0_PBE
    cubic = bulk("Ni", "fcc", a=a0, cubic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # EMT is not at zero stress at the PBE a0
        elastic = elastic_constants(bulk("Ni", "fcc", a=a0), emt, progress=False)
    for key, value in (("C11", elastic.c11_gpa), ("C12", elastic.c12_gpa), ("C44", elastic.c44_gpa)):
        assert got[key] == pytest.approx(value, abs=1.0), key
    gsf = generalized_stacking_fault(cubic, emt, n_layers=9, n_points=7, relax_normal=False, progress=False)
    for u, gamma in zip(np.linspace(0, 1, 7)[1:], gsf.gamma_unrelaxed_mj_m2[1:]):
        assert got[f"gsf_rigid_u{u:.3f}"] == pytest.approx(gamma, abs=0.06), u
    surfaces = surface_energies(cubic, emt, facets=("111",), relax_positions=False, progress=False)
    assert surfaces.n_layers["111"] == 6
    assert got["surface_energy_111_unrelaxed"] == pytest.approx(surfaces.gamma_unrelaxed_j_m2["111"], abs=6e-4)
    vacancy = vacancy_formation_energy(cubic, emt, sizes=(2,), relax_positions=False, progress=False)
    assert got["vacancy_formation_energy_unrelaxed"] == pytest.approx(vacancy.e_vac_ev, abs=6e-4)
    modes = phonons(cubic, emt, supercell=2, progress=False).qpoint_frequencies_thz
    for point in ("X", "L"):
        frequencies = np.sort(np.asarray(modes[point]))
        assert got[f"phonon_{point}_TA"] == pytest.approx(frequencies[0], abs=0.02), point
        assert got[f"phonon_{point}_LA"] == pytest.approx(frequencies[-1], abs=0.02), point
    assert "sigma3_twin_energy_rigid" in got
