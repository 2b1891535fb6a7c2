"""Shared by the vacancy, stacking-fault, surface and adsorption workflows: the elemental FCC bulk crystal they are
referenced to, single-point energies and the geometry of layered cells; and, for the property commands, the crystal a
``--structure`` argument names.

Those workflows take the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`)
and a calculator. A bulk cell that is far from zero pressure gets a warning, because every defect energy is
referenced to its energy per atom or its lattice parameter.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from ase import Atoms, units

from ..errors import DataValidationError
from ..models import check_elements

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: 1 eV/Å^2 in J/m^2
EV_PER_A2_TO_J_PER_M2 = units._e * 1e20
#: above this |pressure| the bulk cell is reported as not relaxed
BULK_PRESSURE_WARNING_GPA = 1.0


def bulk_energy_per_atom(bulk: Atoms, calc: "Calculator", where: str) -> float:
    """Energy per atom of ``bulk``; warns when its pressure says it was not relaxed."""
    check_elements(bulk, calc, where=where)
    work = bulk.copy()
    work.calc = calc
    energy = float(work.get_potential_energy()) / len(work)
    pressure = -float(np.trace(work.get_stress(voigt=False))) / 3 / units.GPa
    if abs(pressure) > BULK_PRESSURE_WARNING_GPA:
        warnings.warn(f"{where}: the bulk cell is at {pressure:.2f} GPa with this calculator; relax it first "
                      "(properties.relax.relax) or the defect energies carry a strain error", RuntimeWarning,
                      stacklevel=3)
    return energy


def fcc_lattice_parameter(bulk: Atoms) -> tuple[str, float]:
    """(symbol, cubic lattice parameter in Å) of an elemental FCC crystal given in any cell; raises otherwise."""
    symbols = set(bulk.get_chemical_symbols())
    if len(symbols) != 1:
        raise ValueError(f"an elemental FCC crystal is expected, got the elements {sorted(symbols)}")
    a0 = (4 * bulk.get_volume() / len(bulk)) ** (1 / 3)
    big = bulk.repeat([max(1, math.ceil(6.0 / np.linalg.norm(v))) for v in bulk.cell])
    distances = big.get_all_distances(mic=True)
    nearest = distances[distances > 1e-6].min()
    if abs(nearest / (a0 / math.sqrt(2)) - 1) > 0.015:
        raise ValueError(f"the crystal is not FCC: nearest-neighbour distance {nearest:.3f} Å, "
                         f"but an FCC cell of this volume per atom would have {a0 / math.sqrt(2):.3f} Å")
    return symbols.pop(), a0


def layers_by_height(atoms: Atoms, tolerance: float = 0.1) -> list[np.ndarray]:
    """Atom indices grouped by height (z), from bottom to top."""
    order = np.argsort(atoms.positions[:, 2])
    layers, current = [], [order[0]]
    for index in order[1:]:
        if atoms.positions[index, 2] - atoms.positions[current[-1], 2] > tolerance:
            layers.append(np.array(current))
            current = []
        current.append(index)
    layers.append(np.array(current))
    return layers


def plane_area(atoms: Atoms) -> float:
    """Area (Å^2) of the plane spanned by the first two cell vectors."""
    return float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))


def single_point_energy(atoms: Atoms, calc: "Calculator") -> float:
    """Potential energy of a copy of ``atoms`` with ``calc`` (``atoms`` keeps its own calculator)."""
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


def structure_from_argument(text: str) -> Atoms:
    """An element symbol gives its bulk crystal (ase.build.bulk; FCC Ni at a = 3.52 Å); anything else is read
    as a structure file (its last frame), which must be periodic."""
    from ase.build import bulk
    from ase.data import chemical_symbols
    from ase.io import read

    from ..data import read_structure

    if text in chemical_symbols[1:] and not Path(text).exists():
        return bulk("Ni", "fcc", a=3.52) if text == "Ni" else bulk(text)
    path = Path(text)
    if not path.is_file():
        raise DataValidationError([(text, None, "structure", "neither an element symbol nor an existing file")])
    atoms = read_structure(path)
    if not atoms.pbc.all():
        message = f"an EOS needs a crystal periodic along all three axes, got pbc={atoms.pbc.tolist()}"
        raise DataValidationError([(str(path), len(read(path, index=":")) - 1, "pbc", message)])
    return atoms


def settings_keywords(settings_class: type) -> Callable[[Callable], Callable]:
    """Decorator of a property's keyword form, ``f(atoms, calc, **settings)`` calling ``compute(atoms, calc,
    Settings(**settings))``: its signature lists the fields of ``settings_class`` as keyword-only arguments with their
    defaults, so that help() and completion show them (the dataclass stays the one place that holds them)."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)
        kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        names = {p.name for p in kept}
        keywords = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
                    for f in dataclasses.fields(settings_class) if f.name not in names]
        function.__signature__ = signature.replace(parameters=kept + keywords)
        return function

    return decorate
