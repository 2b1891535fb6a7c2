"""A fine-tuned model directory: ``umlip_model.json`` (manifest) + weights; loaded back as an ASE calculator.

The manifest records the base model (name or checkpoint, sha256), the strategy, hyperparameters, data hashes
and the per-element energy shifts fitted on the training set; the calculator adds those shifts back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..errors import ModelUnavailable
from ..io import sha256_file
from ..models.loading import MANIFEST_NAME
from .adapters import adapter_for
from .strategies import WEIGHTS_FILE, apply_saved_weights

MANIFEST_FORMAT = "umlip-finetuned/1"


class ShiftedCalculator(Calculator):
    """Wraps a calculator and adds per-element energy shifts (eV) to its energies; forces and stress unchanged."""

    def __init__(self, inner: Calculator, energy_shifts_ev: dict[str, float], **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner
        self.energy_shifts_ev = dict(energy_shifts_ev)
        self.implemented_properties = list(getattr(inner, "implemented_properties", ["energy", "forces"]))

    def __getattr__(self, name: str) -> Any:
        # family helpers read model attributes (type_map, model, cutoff) off the calculator
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

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


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelUnavailable(f"{path} does not exist: {directory} is not a fine-tuned model directory") from None
    except json.JSONDecodeError as exc:
        raise ModelUnavailable(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelUnavailable(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return manifest


def load_finetuned(directory: str | Path, device: str = "cpu", **options: Any) -> Calculator:
    """The fine-tuned model in ``directory`` as an ASE calculator (LoRA adapters merged into the weights)."""
    from ..models.loading import load_calculator

    directory = Path(directory)
    manifest = read_manifest(directory)
    base_info = manifest["base_model"]
    weights = directory / WEIGHTS_FILE[manifest["strategy"]]
    if not weights.is_file():
        raise ModelUnavailable(f"{directory}: the manifest names {weights.name}, which is missing")
    if manifest.get("weights_sha256") and sha256_file(weights) != manifest["weights_sha256"]:
        raise ModelUnavailable(f"{weights}: sha256 differs from the manifest's; the file was changed or truncated")
    load = base_info["load"]
    if base_info.get("load_relative") and not Path(load).exists():  # a path: a checkpoint or fine-tuned directory
        moved = (directory / base_info["load_relative"]).resolve()
        if not moved.exists():
            raise ModelUnavailable(f"{directory} was fine-tuned from {load}, which is missing (nor is it at {moved}, "
                                   "where it would be had both moved together); put it back at either place")
        load = str(moved)  # the sha256 check below still applies
    base = load_calculator(load, device=device, family=base_info.get("family"), **options)
    expected_sha = base_info.get("sha256")
    actual_sha = getattr(base, "umlip_info", {}).get("sha256")
    if expected_sha and actual_sha and expected_sha != actual_sha:
        raise ModelUnavailable(
            f"{directory}: the base model {load!r} here has sha256 {actual_sha[:12]}..., but the "
            f"fine-tuning started from {expected_sha[:12]}...; the adapters do not fit these weights"
        )
    if isinstance(base, ShiftedCalculator):  # fine-tuned again: the new shifts were fitted on the raw model
        base = base.umlip_base
    adapter = adapter_for(base)
    module = adapter.module(base)
    apply_saved_weights(module, adapter, directory, manifest["strategy"], manifest.get("lora"))
    module.eval().requires_grad_(False)  # as finetune() leaves it: inference differentiates positions only
    calc = ShiftedCalculator(base, manifest["energy_shifts_ev"])
    calc.umlip_info = {
        "name": directory.name,
        "family": base_info.get("family"),
        "version": f"fine-tuned ({manifest['strategy']}) from {base_info.get('name')}",
        "checkpoint": str(directory.resolve()),
        "sha256": sha256_file(weights),
        "base_model": base_info,
        "device": device,
    }
    calc.umlip_family = getattr(base, "umlip_family", None)
    calc.umlip_base = base
    return calc
