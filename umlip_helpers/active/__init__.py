"""Online active learning with a parent calculator, and periodic against naive fine-tuning along MD.

Modules, each importing only those above it in this list:

* :mod:`.settings`: the workflows' frozen settings (:class:`ActiveRelaxSettings`, ...);
* :mod:`.head_fit`: closed-form readout algebra; :mod:`.uncertainty`: committee spread, descriptor distance and the
  structure-only descriptors; :mod:`.readout`: readout linearisation, :class:`~.readout.ReadoutCalculator` and the
  periodic workflows' fitter;
* :mod:`.surrogate`: the online learner's surrogate; :mod:`.online`: :func:`relax_active`;
  :mod:`.systems`: benchmark systems and parent-only baselines;
* :mod:`.periodic`: :func:`naive_finetune`, :func:`periodic_finetune`; :mod:`.production`:
  :func:`compare_production`.
"""

from __future__ import annotations

from typing import Any

from .online import ActiveLearningFailed, ActiveRelaxResult, relax_active
from .periodic import SamplingRun, naive_finetune, periodic_finetune
from .production import ProductionComparison, compare_production
from .settings import ActiveRelaxSettings, NaiveSettings, PeriodicSettings, ProductionSettings
from .systems import parent_relax

__all__ = ["ActiveLearningFailed", "ActiveRelaxResult", "ActiveRelaxSettings", "cli_relax_active", "parent_relax",
           "relax_active"]
__all__ += ["NaiveSettings", "PeriodicSettings", "ProductionComparison", "ProductionSettings", "SamplingRun",
            "compare_production", "naive_finetune", "periodic_finetune"]


def cli_relax_active(args) -> dict[str, Any]:
    """``umlip relax-active``: relax a structure file with the online learner; returns the result's fields."""
    from ..data import read_structure
    from ..models import load_calculator
    from ..parents import make_parent

    atoms = read_structure(args.structure)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    result = relax_active(atoms, calc, parent=make_parent(args.parent), fmax=args.fmax, query=args.query, k=args.k,
                          correction=args.correction, first_parent_call=args.first_parent_call,
                          max_parent_calls=args.max_parent_calls)
    return {"type": type(result).__name__, **result.to_dict()}
