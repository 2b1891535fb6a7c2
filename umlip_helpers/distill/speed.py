"""MD cost of several calculators on one system (:func:`md_speed`), measured in interleaved rounds of one run."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from ..io import model_info, provenance
from ..models import check_elements
from ..results import Result


@dataclasses.dataclass(frozen=True)
class MDSpeed(Result):
    """Wall time per MD step of several calculators on one system, measured in interleaved rounds of one run (so
    a busy machine slows every model alike); ``speedup`` is each model's speed relative to ``reference``."""

    formula: str
    n_atoms: int
    steps_per_round: int
    rounds: int
    reference: str
    ms_per_step: dict
    speedup: dict
    provenance: dict

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        names = list(self.ms_per_step)
        ax.bar(names, [self.ms_per_step[n] for n in names])
        ax.set(yscale="log", ylabel="ms per MD step", title=f"{self.formula} ({self.n_atoms} atoms)")
        for i, name in enumerate(names):
            ax.annotate(f"{self.speedup[name]:.1f}x", (i, self.ms_per_step[name]), ha="center", va="bottom")
        return ax


def md_speed(calcs: dict[str, Any], atoms: Atoms, *, steps_per_round: int = 5, rounds: int = 2,
             temperature_k: float = 300.0, reference: str | None = None, seed: int = 0,
             progress: bool = True) -> MDSpeed:
    """Milliseconds per NVT (Langevin) step of each calculator on ``atoms``; the first calculator is the reference
    unless ``reference`` names another. Rounds alternate between the models; the median round counts."""
    from ..md import run_md

    if not calcs:
        raise ValueError("md_speed needs at least one calculator")
    reference = reference or next(iter(calcs))
    if reference not in calcs:
        raise ValueError(f"reference {reference!r} is not one of {', '.join(calcs)}")
    for name, calc in calcs.items():
        check_elements(atoms, calc, where=f"md_speed structure ({name})")
    times: dict[str, list[float]] = {name: [] for name in calcs}
    bar = tqdm(total=rounds * len(calcs), desc="MD speed", disable=not progress)
    for round_index in range(rounds):
        for name, calc in calcs.items():
            run = run_md(atoms, calc, ensemble="nvt", temperature_k=temperature_k, steps=steps_per_round,
                         out_dir=None, seed=seed + round_index, progress=False)
            times[name].append(1000.0 * len(atoms) / run.throughput_atom_steps_per_s)
            bar.update(1)
    bar.close()
    ms = {name: float(np.median(values)) for name, values in times.items()}
    return MDSpeed(
        formula=atoms.get_chemical_formula(), n_atoms=len(atoms), steps_per_round=steps_per_round, rounds=rounds,
        reference=reference, ms_per_step=ms, speedup={name: ms[reference] / value for name, value in ms.items()},
        provenance=provenance(None, models={name: model_info(c).to_dict()
                                            for name, c in calcs.items()},
                              steps_per_round=steps_per_round, rounds=rounds, temperature_k=temperature_k,
                              all_ms_per_step=times, load_average=os.getloadavg()),
    )
