"""The named choices of the package's workflows, in one place: the modules that implement them and the command line
(``umlip ... --help``, config files) take them from here. Importing this module costs nothing (no torch, no ASE)."""

from __future__ import annotations

from typing import Literal, get_args

Device = Literal["auto", "cpu", "cuda"]
Strategy = Literal["lora", "head", "full"]
#: the fine-tuning forward's arithmetic: fp32, or bf16 autocast with weights, gradients and loss in fp32
Precision = Literal["fp32", "bf16"]
#: the fine-tuning loss's shape per term: squared error, or Huber (squared near zero, linear beyond a delta)
LossFunction = Literal["mse", "huber"]
#: the fine-tuning learning rate after a linear warm-up: cosine decay to 5 %, or constant
LrSchedule = Literal["cosine", "constant"]
ExportFormat = Literal["lammps"]
Ensemble = Literal["nvt", "npt", "nve"]
Thermostat = Literal["langevin", "nose-hoover", "bussi"]
ParentName = Literal["emt", "gpaw"]
Query = Literal["k_steps", "relax_only", "uncertainty"]
Correction = Literal["gp", "secant", "anchor", "none"]
FirstParentCall = Literal["start", "prior_minimum"]
Optimizer = Literal["FIRE", "BFGS"]
StudentArchitecture = Literal["mace", "sevennet"]
Scheduler = Literal["local", "slurm"]


def options(choice) -> tuple[str, ...]:
    """The values of a Literal choice, in order (``options(Strategy)`` is ``("lora", "head", "full")``)."""
    return tuple(get_args(choice))
