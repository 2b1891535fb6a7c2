"""The settings of the active workflows, as frozen dataclasses: :func:`~.online.relax_active` takes an
:class:`ActiveRelaxSettings`, :func:`~.periodic.naive_finetune` a :class:`NaiveSettings`,
:func:`~.periodic.periodic_finetune` a :class:`PeriodicSettings` and :func:`~.production.compare_production` a
:class:`ProductionSettings`. Each workflow also takes the fields as keyword arguments (:func:`settings_from`), so a
config file and a call with keywords give the same settings object.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Literal, Mapping, get_args

from ..choices import Correction, FirstParentCall, Query
from ..settings import check_choice, settings_from

__all__ = ["ActiveRelaxSettings", "Correction", "Fit", "FirstParentCall", "NaiveSettings", "PeriodicSettings",
           "ProductionSettings", "Query", "SamplingSettings", "Update", "check_choice", "settings_from"]

Update = Literal["closed_form", "finetune", "none"]
Fit = Literal["readout", "head", "lora", "full"]


def _check_positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive or None, got {value}")


@dataclasses.dataclass(frozen=True)
class ActiveRelaxSettings:
    """How :func:`~.online.relax_active` relaxes: when to call the parent, the trust region, the surrogate's refit
    and correction, and the limits. See :func:`~.online.relax_active` for what each field does."""

    fmax: float = 0.03
    query: Query = "k_steps"
    k: int = 10
    surrogate_fmax_ratio: float = 0.5
    trust_radius_angstrom: float = 0.25
    max_trust_radius_angstrom: float = 0.5
    uphill_tolerance_ev: float = 1e-3
    k_grows_with_trust: bool = True
    trusted_prior_residual: float | None = 0.25
    min_stiffness_ev_per_angstrom2: float | None = None
    first_parent_call: FirstParentCall = "start"
    #: None: ``max_trust_radius_angstrom``
    prior_reach_angstrom: float | None = None
    rank: int = 2
    ridge: float = 1e-2
    correction: Correction = "gp"
    gp_length_scale_angstrom: float = 0.4
    #: "auto": closed form where the family has it, else the fine-tuning engine for a known family, else "none"
    update: Update | Literal["auto"] = "auto"
    finetune_epochs: int = 20
    committee_size: int = 4
    maxstep: float = 0.2
    uncertainty_threshold_ev_per_angstrom: float = 0.05
    max_parent_calls: int = 100
    max_surrogate_steps: int = 2000
    seed: int = 0

    #: the fields not recorded in a result's provenance (they were never part of it; a benchmark resumes on it)
    UNRECORDED = ("max_parent_calls", "max_surrogate_steps", "seed")

    def __post_init__(self):
        check_choice("query", self.query, get_args(Query), "k_steps, relax_only or uncertainty")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        _check_positive_or_none("trusted_prior_residual", self.trusted_prior_residual)
        _check_positive_or_none("min_stiffness_ev_per_angstrom2", self.min_stiffness_ev_per_angstrom2)
        _check_positive_or_none("prior_reach_angstrom", self.prior_reach_angstrom)
        check_choice("first_parent_call", self.first_parent_call, get_args(FirstParentCall), "start or prior_minimum")
        check_choice("update", self.update, ("auto", *get_args(Update)), "auto, closed_form, finetune or none")
        check_choice("correction", self.correction, get_args(Correction), "gp, secant, anchor or none")

    def resolved(self, auto_update: Update) -> "ActiveRelaxSettings":
        """These settings for a model for which ``"auto"`` means ``auto_update``: the update and the prior reach
        filled in, and no committee unless the update is closed form (the committee and descriptor PCA live on that
        readout)."""
        update = auto_update if self.update == "auto" else self.update
        return dataclasses.replace(
            self, update=update, committee_size=self.committee_size if update == "closed_form" else 0,
            prior_reach_angstrom=(self.max_trust_radius_angstrom if self.prior_reach_angstrom is None
                                  else self.prior_reach_angstrom))

    @property
    def uses_committee(self) -> bool:
        return self.committee_size > 1

    def provenance_parameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.UNRECORDED}


def _frozen_mapping(value: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """What both fine-tuning workflows share: the sampling MD (Langevin NVT) and the fit of the base model.
    ``fit_options`` go to the fit (``rank``/``ridge`` for the readout, the trainer's options otherwise)."""

    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    fit: Fit = "readout"
    fit_options: Mapping[str, Any] = dataclasses.field(default_factory=_frozen_mapping)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "fit_options", _frozen_mapping(self.fit_options))
        if self.temperature_k <= 0:
            raise ValueError(f"temperature_k must be positive, got {self.temperature_k}")


@dataclasses.dataclass(frozen=True)
class NaiveSettings(SamplingSettings):
    """:func:`~.periodic.naive_finetune`: ``n_trajectories`` base-model MD runs, a label every
    ``sample_interval_steps``."""

    n_trajectories: int = 4
    sample_interval_steps: int = 20


@dataclasses.dataclass(frozen=True)
class PeriodicSettings(SamplingSettings):
    """:func:`~.periodic.periodic_finetune`: a fit every ``interval_steps``, on ``labels_per_interval`` new labels."""

    interval_steps: int = 20
    labels_per_interval: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.labels_per_interval < 1 or self.interval_steps % self.labels_per_interval:
            raise ValueError(f"labels_per_interval ({self.labels_per_interval}) must be >= 1 and divide "
                             f"interval_steps ({self.interval_steps})")


@dataclasses.dataclass(frozen=True)
class ProductionSettings:
    """:func:`~.production.compare_production`: the production MD (Langevin NVT) and how often it is checked."""

    temperature_k: float = 600.0
    steps: int = 200
    timestep_fs: float = 2.0
    eval_interval_steps: int = 10
    parent_md: bool = False
    descriptor_cutoff_angstrom: float = 5.0
    seed: int = 1

    def __post_init__(self):
        if self.steps < self.eval_interval_steps:
            raise ValueError(f"steps ({self.steps}) must be at least eval_interval_steps ({self.eval_interval_steps})")
