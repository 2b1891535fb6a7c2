"""ASE's EMT: a cheap, real classical potential (Ni, Cu, Al, Pd, Ag, Pt, Au; H, C, N, O for adsorbates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import ModelFamily

EMT_ELEMENTS = {"Ni", "Cu", "Al", "Pd", "Ag", "Pt", "Au", "H", "C", "N", "O"}


class EMTFamily(ModelFamily):
    name = "emt"
    package = "ase"

    def load(self, checkpoint: str | Path | None, device: str, **options: Any):
        from ase.calculators.emt import EMT

        return EMT(**options)

    def _supported_elements(self, calc) -> set[str]:
        return set(EMT_ELEMENTS)


FAMILY = EMTFamily()
