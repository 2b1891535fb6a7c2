"""The one interface every model family implements (:class:`ModelFamily`), and the trainer's view of a family
(:class:`FamilyAdapter`).

A family lives in one file, ``models/<family>.py``: loading a checkpoint as an ASE calculator, building a random
model of its architecture at any size, the trainer adapter, the closed-form readout where it has one, and export
for other codes. Adding a family is that file plus one row in ``loading.FAMILY_MODULES``.

Units of :meth:`FamilyAdapter.predict`: energy eV, forces eV/Å, stress eV/Å^3 in ASE's sign and Voigt order
(xx, yy, zz, yz, xz, xy) -- the same numbers the family's ASE calculator reports.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from ..choices import ExportFormat
from ..errors import UmlipError
from .shifted import unshifted

if TYPE_CHECKING:
    import torch
    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: ``build`` sizes every trainable family knows: "tiny" for tests, "student" for distillation students.
Size = Literal["tiny", "student"]


def pickle_mentions(path: Path, *markers: bytes) -> bool:
    """True if ``path`` is a torch zip archive whose pickle holds every marker (a key or class name).

    Reads only the small pickle index, never the tensors, and unpickles nothing.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            index = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
            return index is not None and all(marker in archive.read(index) for marker in markers)
    except (zipfile.BadZipFile, OSError):
        return False


@contextlib.contextmanager
def preserve_global_state():
    """Undo a library's process-wide settings: torch's default dtype and e3nn's optimisation defaults.
    nequip's ``set_global_state`` switches both (float64, TorchScript), which would otherwise leak into every
    model built afterwards (a MACE built then cannot even be pickled)."""
    import torch

    dtype = torch.get_default_dtype()
    try:
        import e3nn
    except ImportError:
        e3nn = None
    e3nn_defaults = e3nn.get_optimization_defaults() if e3nn is not None else None
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        if e3nn is not None:
            e3nn.set_optimization_defaults(**e3nn_defaults)


class FamilyAdapter(abc.ABC):
    """What the trainer needs from a family: the torch module behind a calculator, a differentiable per-frame
    forward returning energy, forces and stress, and the names of its readout ("head") and LoRA targets."""

    family: str
    #: readout modules trained by strategy="head" (dotted paths; the last part is matched)
    heads: tuple[str, ...] = ()
    #: regex (peft ``target_modules``) of the linears LoRA adapts
    lora_targets: str
    #: default LoRA rank for this family (chosen to keep the trainable fraction at or below ~5%)
    lora_rank: int = 8
    #: regex of base parameters trained in full next to the LoRA adapters (None: none)
    lora_extra: str | None = None
    #: regex of the parameter names the family keeps frozen in training (normalisation constants)
    frozen_on_purpose: str | None = None

    @property
    def head_modules(self) -> tuple[str, ...]:
        """Names of the readout modules trained by strategy="head"."""
        return tuple(name.rsplit(".", 1)[-1] for name in self.heads)

    #: the family this adapter belongs to (set by :class:`ModelFamily`)
    owner: "ModelFamily"

    def module(self, calc: Any) -> "torch.nn.Module":
        """The torch module the calculator evaluates (modified in place by training)."""
        return self.owner.torch_module(calc)

    def keep_frozen(self, module: "torch.nn.Module") -> str | None:
        """Regex of the parameter names of ``module`` that training leaves frozen."""
        return self.frozen_on_purpose

    def make_trainable(self, module: "torch.nn.Module") -> None:
        """Inference wrappers (MACE's calculator, fairchem's predictor, metatomic's export) and
        :func:`~umlip_helpers.models.finetuned.load_finetuned` set ``requires_grad=False`` on every weight. Undo that,
        except for :meth:`keep_frozen`, when no weight is trainable; a module a strategy was already applied to
        (LoRA, head) is left as it is."""
        if any(p.requires_grad for p in module.parameters()):
            return
        pattern = self.keep_frozen(module)
        for name, param in module.named_parameters():
            param.requires_grad_(pattern is None or re.fullmatch(pattern, name) is None)

    @abc.abstractmethod
    def prepare(self, calc: Any, atoms: "Atoms") -> Any:
        """Whatever the forward needs for ``atoms`` that does not depend on the weights (graphs, neighbour lists)."""

    @abc.abstractmethod
    def predict(self, module: "torch.nn.Module", sample: Any, training: bool
                ) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """(energy (), forces (n, 3), stress (6,)) with the autograd graph kept when ``training``."""

    def predict_batch(self, module: "torch.nn.Module", samples: list[Any], training: bool
                      ) -> list[tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]]:
        """:meth:`predict` of each sample. A family whose model takes several graphs at once overrides this with one
        forward: a per-frame forward of small cells is bound by Python and kernel launches, most of all on a GPU."""
        return [self.predict(module, sample, training) for sample in samples]


class E3nnFamilyAdapter(FamilyAdapter):
    """Families built on e3nn's generated tensor-product and linear code: their module comes with the block slices
    fused (same numbers and gradients; SevenNet-0 trains 1.3-1.4x and a MACE-MP-small-sized MACE 1.25x faster per
    step on CPU, see :mod:`.e3nn_fx`)."""

    def module(self, calc):
        from .e3nn_fx import fuse_block_slices

        module = super().module(calc)
        fuse_block_slices(module)
        return module


def voigt(s: "torch.Tensor") -> "torch.Tensor":
    """(xx, yy, zz, yz, xz, xy) of the symmetric part of a 3x3 stress, as ASE's ``full_3x3_to_voigt_6_stress``
    gives the calculators' stress (exact for a symmetric tensor; a model that is not rotation-invariant, PET, gives
    an asymmetric strain derivative)."""
    import torch

    s = (s + s.T) / 2
    return torch.stack([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


@dataclasses.dataclass
class ReadoutEvaluation:
    """One forward (and backward) pass of a family's readout (:meth:`ModelFamily.readout`) at fixed weights."""
    energy_ev: float
    forces: np.ndarray            # (N, 3) eV/Å
    atom_features: np.ndarray     # (N, D) readout inputs, for descriptor distances
    phi: np.ndarray | None = None         # (k,) ∂E/∂a for the subspace coordinates a
    phi_forces: np.ndarray | None = None  # (k, N, 3) force of each subspace direction


class ModelFamily(abc.ABC):
    #: short name used in the registry and in fine-tuned manifests ("sevennet", "mace", ...)
    name: str
    #: pip distribution that must be importable ("sevenn", "mace-torch", ...)
    package: str
    #: the trainer's view of this family; None for a family that cannot be trained (EMT)
    adapter: FamilyAdapter | None = None

    def __init__(self) -> None:
        if self.adapter is not None:
            self.adapter.owner = self

    @abc.abstractmethod
    def load(self, checkpoint: str | Path | None, device: str, **options: Any) -> "Calculator":
        """Return an ASE calculator. ``checkpoint`` is a file, or None for weights the package ships."""

    def shipped_weights(self, **options: Any) -> Path | None:
        """The file of weights that ship inside the family's package for these registry options, if any."""
        return None

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny",
              energy_references_ev: Mapping[str, float] | None = None, **options: Any) -> Path:
        """Write a randomly initialised model of this architecture to ``path`` and return the file that ``load``
        (and so ``load_calculator``) accepts. ``size="tiny"`` is for tests; ``"student"`` is a distillation
        student. ``energy_references_ev`` sets the per-element energy references where the family has them;
        ``options`` override the size's hyperparameters (see the family's ``SIZES``)."""
        raise NotImplementedError(f"{self.name}: building a model is not implemented (it has no trainable weights)")

    def check_size(self, size: str, *known: str) -> None:
        if size not in known:
            raise ValueError(f"{self.name}: build knows the size(s) {', '.join(known)}, not {size!r}")

    # Public calls taking a calculator: each accepts any calculator of the family, a fine-tuned one
    # (:class:`~.finetuned.ShiftedCalculator`) included, and hands the family's own calculator to the hook
    # (``_torch_module``, ...) that the family file overrides.

    def torch_module(self, calc: "Calculator") -> "torch.nn.Module":
        """The trainable torch module behind ``calc`` (used by the fine-tuning engine)."""
        return self._torch_module(unshifted(calc))

    def readout(self, calc: "Calculator") -> Any:
        """The family's last linear readout as a closed-form-fittable head (see ``active.head_fit``)."""
        return self._readout(unshifted(calc))

    def supported_elements(self, calc: "Calculator") -> set[str] | None:
        """Chemical symbols the model covers, or None if it covers every element."""
        return self._supported_elements(unshifted(calc))

    def energy_references(self, calc: "Calculator") -> tuple["torch.Tensor", dict[str, int]]:
        """The model's per-element energy references (eV, a torch tensor) and each element's row in it; a
        fine-tuned model's own shifts are not included."""
        return self._energy_references(unshifted(calc))

    @property
    def has_readout(self) -> bool:
        return type(self)._readout is not ModelFamily._readout

    def _torch_module(self, calc: "Calculator") -> "torch.nn.Module":
        raise NotImplementedError(f"{self.name}: torch_module is not implemented")

    def _readout(self, calc: "Calculator") -> Any:
        raise UmlipError(f"closed-form readout fitting is implemented for SevenNet models; got family {self.name!r}")

    def _supported_elements(self, calc: "Calculator") -> set[str] | None:
        return None

    def _energy_references(self, calc: "Calculator") -> tuple["torch.Tensor", dict[str, int]]:
        raise UmlipError(f"{self.name}: the model has no per-element energy references to set")

    def export(self, calc: "Calculator", fmt: ExportFormat, out: Path, elements: Sequence[str]) -> dict[str, Any]:
        """Write ``calc`` (LoRA merged, energy shifts folded in) for another code with the family's own deploy
        tool; return what the export manifest records. See :func:`umlip_helpers.export.export_model`."""
        raise UmlipError(f"{self.name}: export to {fmt} is not implemented for this family")

    def recognises(self, path: Path) -> bool:
        """True if ``path`` looks like a checkpoint of this family (used when no family is named)."""
        return False
