"""What a distillation does, as frozen settings: the configurations it generates (:class:`GenerationSettings`), the
student it trains (:class:`StudentSettings`), and both with the MD timing (:class:`DistillSettings`).

Each workflow takes its settings object or the fields as keyword arguments (``train_student(data, out, epochs=3)``),
as notebook 08, ``benchmarks/distillation.py`` and ``umlip distill`` call them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..active.settings import check_choice, settings_from
from ..choices import StudentArchitecture, options

ARCHITECTURES: tuple[str, ...] = options(StudentArchitecture)
#: Loss weights (see :class:`~umlip_helpers.finetune.trainer.LossWeights`) for training from scratch: forces lead;
#: 10 meV/atom of energy error weighs as much as 0.03 eV/Å of force error.
DISTILLATION_LOSS_WEIGHTS = {"energy_per_atom_mev": 1e-5, "forces_ev_per_angstrom": 1.0, "stress_gpa": 1e-3}


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Configurations around each start structure (:func:`~.configurations.generate_configurations`): teacher NVT
    (Langevin) MD at each temperature, one frame every ``md_interval`` steps (none when ``md_steps`` is 0);
    ``rattles_per_amplitude`` Gaussian displacements per amplitude (standard deviation, Å); isotropic strains
    (fractional change of the lattice constants), each rattled by ``strain_rattle_angstrom``."""

    temperatures_k: tuple[float, ...] = (300.0, 600.0)
    md_steps: int = 20
    md_interval: int = 5
    timestep_fs: float = 1.0
    rattle_amplitudes_angstrom: tuple[float, ...] = (0.02, 0.05)
    rattles_per_amplitude: int = 2
    strains: tuple[float, ...] = (-0.02, 0.02)
    strain_rattle_angstrom: float = 0.02

    def __post_init__(self) -> None:
        for name in ("temperatures_k", "rattle_amplitudes_angstrom", "strains"):  # lists from a config file
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))


@dataclasses.dataclass(frozen=True)
class StudentSettings:
    """The student (:func:`~.student.train_student`): its architecture and size (overrides of the family's
    ``SIZES["student"]``), and how it is trained from scratch. Without validation frames, ``val_fraction`` of the
    training frames (when there are 10 or more) validate."""

    architecture: StudentArchitecture = "mace"
    size: Mapping[str, Any] | None = None
    val_fraction: float = 0.1
    epochs: int = 50
    batch_size: int = 2
    lr: float = 1e-2
    #: a :class:`~umlip_helpers.finetune.trainer.LossWeights`; None: :data:`DISTILLATION_LOSS_WEIGHTS`
    loss_weights: Any = None
    patience: int = 20
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES, f"one of {', '.join(ARCHITECTURES)}")


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """A whole distillation (:func:`~umlip_helpers.distill.distill`): the configurations, the student, and the MD
    steps per round when the student is timed against the teacher. The student's ``seed`` also seeds the
    configurations."""

    generation: GenerationSettings = dataclasses.field(default_factory=GenerationSettings)
    student: StudentSettings = dataclasses.field(default_factory=StudentSettings)
    speed_steps: int = 5

    @classmethod
    def from_options(cls, settings: "DistillSettings | None" = None, **options: Any) -> "DistillSettings":
        """``settings`` (or the defaults) with ``distill``'s keyword arguments put in: the student's fields,
        ``generation`` (a dict of :class:`GenerationSettings` fields, or one) and ``speed_steps``."""
        settings = settings or cls()
        generation = options.pop("generation", None)
        if isinstance(generation, Mapping):
            generation = settings_from(GenerationSettings, settings.generation, generation, "generation")
        own = {"speed_steps": options.pop("speed_steps")} if "speed_steps" in options else {}
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(StudentSettings)})
        if unknown:
            raise TypeError(f"distill() got unexpected keyword arguments: {', '.join(unknown)} (it takes the fields "
                            "of StudentSettings, generation= and speed_steps=)")
        student = settings_from(StudentSettings, settings.student, options, "distill")
        return dataclasses.replace(settings, student=student, generation=generation or settings.generation, **own)
