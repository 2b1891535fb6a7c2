"""One property, several models: ``compare_models("eos", ["sevennet-0", "chgnet-0.3.0", "emt"], bulk("Ni"))``.

Every property module has ``compute(atoms, calc, settings) -> Result`` with a frozen settings dataclass;
:data:`PROPERTIES` names them (the alloys module has two: the solid-solution scan and the L1_2 compound).
:func:`compare_models` loads each model in turn with :func:`umlip_helpers.models.load_calculator`, skips one that
cannot run here (its weights or package missing, or an element of the structure it was not trained on) with the
reason, runs ``compute`` and returns the results side by side. :func:`available_calculators` is the same
load-or-skip step for a study that keeps the calculators and runs several things with them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from ase import Atoms

from ..errors import ModelUnavailable, UnsupportedElements
from ..io import provenance, to_jsonable
from ..models import load_calculator
from ..results import Result

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: property name -> "module:function" in umlip_helpers.properties; each function is compute(atoms, calc, settings)
PROPERTIES: dict[str, str] = {
    "relax": "relax:compute",
    "eos": "eos:compute",
    "elastic": "elastic:compute",
    "phonons": "phonons:compute",
    "vacancy": "vacancy:compute",
    "stacking_faults": "stacking_faults:compute",
    "surfaces": "surfaces:compute",
    "adsorption": "adsorption:compute",
    "solid_solution": "alloys:compute",
    "l12": "alloys:compute_l12",
    "grain_boundaries": "grain_boundaries:compute",
    "migration": "migration:compute",
}
#: why a model is skipped rather than failing the comparison: its weights or its package are not here
UNAVAILABLE = (ModelUnavailable, ImportError)


def property_compute(name: str) -> Callable[..., Result]:
    """The ``compute`` function registered as ``name`` in :data:`PROPERTIES`."""
    if name not in PROPERTIES:
        raise KeyError(f"unknown property {name!r}; choose from {', '.join(PROPERTIES)}")
    module, function = PROPERTIES[name].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def settings_class(compute: Callable[..., Result]) -> type:
    """The frozen settings dataclass of a ``compute(atoms, calc, settings=Settings())`` function."""
    default = inspect.signature(compute).parameters["settings"].default
    return type(default)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0]}"


def _labelled(models: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(models, Mapping):
        return dict(models)
    return {str(model): model for model in models}


def _each_calculator(models: Mapping[str, Any], skipped: dict[str, str], device: str,
                     threads: int | None, progress: bool) -> Iterator[tuple[str, "Calculator"]]:
    """(label, calculator) for each model that loads, one at a time; the others go into ``skipped`` with why."""
    from tqdm.auto import tqdm

    for label, model in tqdm(models.items(), desc="models", disable=not progress, leave=False):
        if model is None or isinstance(model, (int, float)):
            raise TypeError(f"model {label!r} is {model!r}: give a name, a checkpoint, a directory or a calculator")
        if not isinstance(model, (str, os.PathLike)):  # a calculator already loaded
            yield label, model
            continue
        try:
            calc = load_calculator(model, device=device, threads=threads)
        except UNAVAILABLE as exc:
            skipped[label] = _reason(exc)
            continue
        yield label, calc


def available_calculators(models: Sequence[Any] | Mapping[str, Any], *, device: str = "auto",
                          threads: int | None = None) -> tuple[dict[str, "Calculator"], dict[str, str]]:
    """(label -> calculator of every model that loads here, label -> why each other one was skipped). ``models``:
    names, checkpoints or fine-tuned directories (labelled by themselves), or a mapping label -> one of those."""
    skipped: dict[str, str] = {}
    loaded = dict(_each_calculator(_labelled(models), skipped, device, threads, progress=False))
    return loaded, skipped


@dataclasses.dataclass(frozen=True)
class ModelComparison(Result):
    """One property computed with several models: ``results`` label -> that model's Result, ``skipped`` label ->
    why it did not run. ``rows()`` / ``table()``: the summary fields of each result, one row per model."""

    property: str
    formula: str
    settings: dict
    results: dict
    skipped: dict
    provenance: dict

    summary_fields = ("property", "formula")

    def rows(self) -> list[dict[str, Any]]:
        return [{"model": label, **result.summary()} for label, result in self.results.items()]

    def table(self):
        """``rows()`` as a pandas DataFrame indexed by model."""
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("model") if self.results else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["results"] = {label: result.to_dict() for label, result in self.results.items()}
        return to_jsonable(out)

    def plot(self, ax=None):
        """Every model's ``plot`` on one axes when it takes a label (E(V), a path, a scan), else one panel each."""
        import matplotlib.pyplot as plt

        if not self.results:
            raise ValueError(f"no model computed {self.property}; skipped: {self.skipped}")
        first = next(iter(self.results.values()))
        parameters = inspect.signature(first.plot).parameters
        if "label" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            if ax is None:
                _, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
            for label, result in self.results.items():
                result.plot(ax=ax, label=label)
            return ax
        _, axes = plt.subplots(1, len(self.results), figsize=(4.2 * len(self.results), 3.4), squeeze=False,
                               layout="constrained")
        for panel, (label, result) in zip(axes[0], self.results.items()):
            result.plot(ax=panel)
            panel.set_title(label)
        return axes[0]


def compare_models(property: str | Callable[..., Result], models: Sequence[Any] | Mapping[str, Any],
                   structure: Atoms | Mapping[str, Atoms], settings: Any = None, *, device: str = "auto",
                   threads: int | None = None, progress: bool = True) -> ModelComparison:
    """``property`` (a name in :data:`PROPERTIES` or a ``compute`` function) of ``structure`` for every model.

    models: names, checkpoints or fine-tuned directories, or a mapping label -> one of those or a calculator already
        loaded. Each is loaded in turn, computed and let go; one whose weights or package are missing
        (ModelUnavailable, ImportError) or that does not cover the structure's elements (UnsupportedElements) is
        skipped with the reason (``skipped``); any other error propagates.
    structure: one structure for every model, or a mapping label -> structure (each model's own relaxed crystal).
    settings: the property's settings dataclass; None takes its defaults.
    """
    compute = property_compute(property) if isinstance(property, str) else property
    name = property if isinstance(property, str) else f"{compute.__module__.rsplit('.', 1)[-1]}.{compute.__name__}"
    settings = settings_class(compute)() if settings is None else settings
    labelled = _labelled(models)
    if isinstance(structure, Mapping) and set(labelled) - set(structure):
        raise KeyError(f"compare_models: no structure for {sorted(set(labelled) - set(structure))}")
    results: dict[str, Result] = {}
    skipped: dict[str, str] = {}
    for label, calc in _each_calculator(labelled, skipped, device, threads, progress):
        atoms = structure[label] if isinstance(structure, Mapping) else structure
        try:
            results[label] = compute(atoms, calc, settings)
        except UnsupportedElements as exc:
            skipped[label] = _reason(exc)
    first = next(iter(structure.values())) if isinstance(structure, Mapping) else structure
    return ModelComparison(
        property=name,
        formula=first.get_chemical_formula(),
        settings=to_jsonable(dataclasses.asdict(settings)),
        results=results,
        skipped=skipped,
        provenance=provenance(None, property=name, models=list(labelled), settings=dataclasses.asdict(settings),
                              device=device),
    )
