"""Online active learning with a parent calculator: the FINETUNA-style learner, closed-form readout fits,
and uncertainty (committee spread, descriptor distance, Gaussian-process variance)."""

from __future__ import annotations

from typing import Any

from .online import ActiveLearningFailed, ActiveRelaxResult, parent_relax, relax_active
from .periodic import ProductionComparison, SamplingRun, compare_production, naive_finetune, periodic_finetune

__all__ = ["ActiveLearningFailed", "ActiveRelaxResult", "cli_relax_active", "parent_relax", "relax_active"]
__all__ += ["ProductionComparison", "SamplingRun", "compare_production", "naive_finetune", "periodic_finetune"]


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
