"""ASE's EMT: a cheap, real classical potential (Ni, Cu, Al, Pd, Ag, Pt, Au; H, C, N, O for adsorbates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .base import ModelFamily

EMT_ELEMENTS = {"Ni", "Cu", "Al", "Pd", "Ag", "Pt", "Au", "H", "C", "N", "O"}


class EMTFamily(ModelFamily):
    name = "emt"
    package = "ase"

    def load(self, checkpoint: str | Path | None, device: str, **options: Any):
        from ase.calculators.emt import EMT

        return EMT(**options)

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0) -> Path:
        raise NotImplementedError("EMT has no trainable parameters")

    def supported_elements(self, calc) -> set[str]:
        return set(EMT_ELEMENTS)


FAMILY = EMTFamily()
