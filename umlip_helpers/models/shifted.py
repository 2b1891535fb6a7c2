"""A fine-tuned model as an ASE calculator: the base model's own calculator plus the per-element energy shifts
fitted with it (:class:`ShiftedCalculator`), and the way back to the family's calculator (:func:`unshifted`).

Kept apart from :mod:`.finetuned` (the saved format) so that :mod:`.base` can unshift without importing it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class ShiftedCalculator(Calculator):
    """A fine-tuned model: ``inner`` (the base model's calculator, its torch module carrying the fine-tuned weights)
    plus per-element energy shifts (eV) added to its energies; forces and stress unchanged."""

    def __init__(self, inner: Calculator, energy_shifts_ev: dict[str, float], **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner
        self.energy_shifts_ev = dict(energy_shifts_ev)
        self.implemented_properties = list(getattr(inner, "implemented_properties", ["energy", "forces"]))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.inner.calculate(self.atoms, properties, system_changes)
        results = dict(self.inner.results)
        per_atom = np.array([self.energy_shifts_ev.get(s, 0.0) for s in self.atoms.get_chemical_symbols()])
        for key in ("energy", "free_energy"):
            if key in results:
                results[key] = float(results[key]) + float(per_atom.sum())
        if "energies" in results:
            results["energies"] = np.asarray(results["energies"]) + per_atom
        self.results = results


def unshifted(calc: Any) -> Any:
    """The family's own calculator behind ``calc`` (the inner one of a :class:`ShiftedCalculator`)."""
    return calc.inner if isinstance(calc, ShiftedCalculator) else calc
