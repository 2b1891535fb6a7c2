"""The literature tables in data/references: every value names its DOI, every missing row says what was searched."""

from __future__ import annotations

from umlip_helpers.properties.references import literature_values


def test_defect_and_alloy_rows_cite_or_say_what_was_searched():
    rows = [r for rows in literature_values(("ni_defects_alloys_literature.csv",)).values() for r in rows]
    assert rows
    for row in rows:
        if row["value"] is None:
            assert row["method"].startswith("missing") and "searched" in row["method"], row["quantity"]
        else:
            assert "doi:" in row["source"].lower(), row["quantity"]
        assert row["unit"], row["quantity"]


def test_compared_quantities_all_have_a_row():
    table = literature_values()
    for quantity in ("vacancy_formation_energy", "vacancy_migration_energy", "self_diffusion_activation_energy",
                     "isf_energy", "usf_energy", "surface_energy_111", "surface_energy_100", "surface_energy_110",
                     "sigma3_twin_energy", "sigma5_310_gb_energy", "sigma5_210_gb_energy",
                     "H_adsorption_energy_Ni111", "O_adsorption_energy_Ni111", "Ni3Al_a0", "Ni3Al_C11",
                     "Ni3Al_C12", "Ni3Al_C44", "Ni3Al_formation_enthalpy"):
        assert quantity in table, quantity
