"""The uniform property call: every registered property is ``compute(atoms, calc, settings)`` with a frozen settings
dataclass, returns a frozen Result with provenance, and gives what its keyword form gives; ``compare_models`` runs
one property over several models and skips the ones that cannot run here, with the reason."""

from __future__ import annotations

import dataclasses
import inspect

import matplotlib
import numpy as np
import pytest
from ase.build import bulk

from umlip_helpers.models import load_calculator
from umlip_helpers.properties import (PROPERTIES, ModelComparison, adsorption_energies, compare_models,
                                      elastic_constants, eos, generalized_stacking_fault, l12_compound, phonons, relax,
                                      solid_solution_scan, surface_energies, vacancy_formation_energy)
from umlip_helpers.properties.compare import available_calculators, property_compute, settings_class
from umlip_helpers.results import Result

matplotlib.use("Agg")

#: cheap settings for each property with EMT on Ni (a few seconds each)
CHEAP = {
    "relax": dict(fmax=0.01, progress=False),
    "eos": dict(npoints=5, progress=False),
    "elastic": dict(strains=(-0.005, 0.005), progress=False),
    "phonons": dict(supercell=2, mesh=4, band_points=5, progress=False),
    "vacancy": dict(sizes=(2,), fmax=0.05, progress=False),
    "stacking_faults": dict(n_layers=6, n_points=3, relax_normal=False, progress=False),
    "surfaces": dict(facets=("111",), thickness_angstrom=5.0, relax_positions=False, progress=False),
    "adsorption": dict(adsorbates=("H",), sites=("fcc",), n_layers=3, n_relaxed_layers=1, fmax=0.05,
                       progress=False),
    "solid_solution": dict(solute="Cu", host_fractions=(0.0, 0.5, 1.0), n_configs=1, size=1, fmax=0.05,
                           progress=False),
    "l12": dict(minority="Al", elastic=False, fmax=0.05),
    "grain_boundaries": dict(boundary="sigma3_111", separation_angstrom=5.0, translation_grid=(1, 1), n_relaxed=1,
                             fmax=0.05, progress=False),
    "migration": dict(supercell=2, n_images=3, fmax=0.1, endpoint_fmax=0.05, steps=50, with_formation_energy=False,
                      progress=False),
}
#: the keyword form each module keeps for notebooks, benchmarks and the command line (None: compute is the only one)
KEYWORD_FORMS = {
    "relax": relax, "eos": eos, "elastic": elastic_constants, "phonons": phonons,
    "vacancy": vacancy_formation_energy, "stacking_faults": generalized_stacking_fault,
    "surfaces": surface_energies, "adsorption": adsorption_energies,
    "solid_solution": lambda atoms, calc, solute, **kw: solid_solution_scan(calc, "Ni", solute, **kw),
    "l12": lambda atoms, calc, minority, **kw: l12_compound(calc, "Ni", minority, **kw),
    "grain_boundaries": None, "migration": None,
}


@pytest.fixture(scope="module")
def emt():
    return load_calculator("emt")


@pytest.fixture(scope="module")
def ni(emt):
    """EMT's relaxed cubic Ni cell (4 atoms)."""
    return relax(bulk("Ni", "fcc", a=3.52, cubic=True), emt, fmax=0.001, progress=False).atoms


def _comparable(result: Result) -> dict:
    out = result.to_dict()
    out["provenance"] = {k: v for k, v in out["provenance"].items() if k != "created_utc"}
    return out


def test_the_registry_covers_every_property_module():
    assert set(PROPERTIES) == set(CHEAP) == set(KEYWORD_FORMS)


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_compute_takes_atoms_calc_and_frozen_settings(name):
    compute = property_compute(name)
    assert list(inspect.signature(compute).parameters) == ["atoms", "calc", "settings"]
    settings = settings_class(compute)
    assert dataclasses.is_dataclass(settings) and settings.__dataclass_params__.frozen
    assert settings.__name__.endswith("Settings")
    instance = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, dataclasses.fields(settings)[0].name, None)
    form = KEYWORD_FORMS[name]
    if form is not None and form.__name__ != "<lambda>":  # help() shows the settings as keywords
        shown = inspect.signature(form).parameters
        assert {f.name for f in dataclasses.fields(settings)} == set(list(shown)[2:])


@pytest.mark.filterwarnings("ignore:.*NEB path:RuntimeWarning")
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_compute_with_emt_returns_a_frozen_result_equal_to_the_keyword_form(name, emt, ni):
    compute = property_compute(name)
    settings = settings_class(compute)(**CHEAP[name])
    result = compute(ni, emt, settings)
    assert isinstance(result, Result) and type(result).__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.provenance = {}
    assert result.provenance["model"]["name"] == "emt" and result.provenance["created_utc"]
    assert result.summary()
    form = KEYWORD_FORMS[name]
    if form is not None:
        assert _comparable(form(ni, emt, **CHEAP[name])) == _comparable(result)


def test_settings_name_the_field_at_fault():
    from umlip_helpers.properties import RelaxSettings, StackingFaultSettings, VacancySettings

    with pytest.raises(ValueError, match="RelaxSettings.optimizer"):
        RelaxSettings(optimizer="LBFGS")
    with pytest.raises(ValueError, match="VacancySettings.sizes"):
        VacancySettings(sizes=(0,))
    with pytest.raises(ValueError, match="StackingFaultSettings.n_points"):
        StackingFaultSettings(n_points=2)
    with pytest.raises(TypeError, match="npoint"):
        eos(bulk("Ni"), None, npoint=5)  # a misspelt keyword is refused, not ignored


def test_compare_models_skips_a_model_without_weights_with_its_reason(ni, emt):
    from umlip_helpers.properties import EOSSettings

    settings = EOSSettings(**CHEAP["eos"])
    comparison = compare_models("eos", ["emt", "mace-mp-0"], ni, settings, progress=False)
    assert isinstance(comparison, ModelComparison) and list(comparison.results) == ["emt"]
    assert "ModelUnavailable" in comparison.skipped["mace-mp-0"]
    assert "not available" in comparison.skipped["mace-mp-0"]
    direct = property_compute("eos")(ni, emt, settings)
    assert _comparable(comparison.results["emt"]) == _comparable(direct)
    rows = comparison.rows()
    assert [row["model"] for row in rows] == ["emt"] and rows[0]["a0_angstrom"] == direct.a0_angstrom
    assert comparison.to_dict()["results"]["emt"]["b0_gpa"] == pytest.approx(direct.b0_gpa)
    assert comparison.provenance["parameters"]["settings"]["npoints"] == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        comparison.skipped = {}


def test_compare_models_skips_elements_a_model_lacks_and_takes_one_structure_per_model(emt):
    """EMT has no Si: skipped with UnsupportedElements. A mapping gives each model its own structure; a
    calculator already loaded is used as it is."""
    settings = settings_class(property_compute("eos"))(**CHEAP["eos"])
    comparison = compare_models("eos", {"emt on Si": emt, "emt on Cu": emt},
                                {"emt on Si": bulk("Si"), "emt on Cu": bulk("Cu", a=3.6)}, settings, progress=False)
    assert list(comparison.results) == ["emt on Cu"]
    assert comparison.skipped["emt on Si"].startswith("UnsupportedElements")
    assert 3.55 < comparison.results["emt on Cu"].a0_angstrom < 3.65
    with pytest.raises(KeyError, match="no structure for"):
        compare_models("eos", ["emt"], {"other": bulk("Cu")}, settings, progress=False)
    with pytest.raises(KeyError, match="unknown property"):
        compare_models("bandgap", ["emt"], bulk("Cu"))
    with pytest.raises(TypeError, match="'emt' is None"):
        compare_models("eos", dict.fromkeys(["emt"]), bulk("Cu"), settings, progress=False)
    loaded, skipped = available_calculators(["emt", "mace-mp-0"])
    assert list(loaded) == ["emt"] and list(skipped) == ["mace-mp-0"]


def test_compare_models_with_sevennet_on_a_one_atom_cell():
    """A real uMLIP beside EMT: the FCC Ni EOS from both, as a table and a plot."""
    settings = settings_class(property_compute("eos"))(**CHEAP["eos"])
    comparison = compare_models("eos", ["sevennet-0", "emt"], bulk("Ni", "fcc", a=3.52), settings, progress=False)
    assert list(comparison.results) == ["sevennet-0", "emt"] and not comparison.skipped
    table = comparison.table()
    assert list(table.index) == ["sevennet-0", "emt"]
    assert np.all((table["a0_angstrom"] > 3.45) & (table["a0_angstrom"] < 3.60))
    assert 150 < table.loc["sevennet-0", "b0_gpa"] < 260
    assert comparison.results["sevennet-0"].provenance["model"]["name"] == "sevennet-0"
    ax = comparison.plot()
    assert [line.get_label() for line in ax.get_lines()][::2] == ["sevennet-0", "emt"]
