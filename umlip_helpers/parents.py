"""Parent (reference) calculators for online active learning: EMT, GPAW for small cells, and the user's VASP.

A *parent* is either an ASE calculator (reused for every structure) or a factory ``parent(atoms) -> calculator``
that builds a fresh calculator per structure. DFT codes should use factories: GPAW, for instance, raises
``SymmetryBrokenError`` when a calculator set up for one structure is reused after the atoms moved off symmetry.

Your own VASP as the parent (ASE writes INCAR/POSCAR/KPOINTS/POTCAR and runs VASP for each parent call)::

    import os
    from ase.calculators.vasp import Vasp

    os.environ["ASE_VASP_COMMAND"] = "mpirun -np 32 vasp_std"      # or srun ... inside a SLURM job
    os.environ["VASP_PP_PATH"] = "/path/to/potpaw_dirs"             # holds potpaw_PBE/<element>/POTCAR

    def vasp_parent(atoms):
        return Vasp(directory=f"parent_calls/{len(os.listdir('parent_calls'))}", xc="PBE", encut=520,
                    kspacing=0.25, ediff=1e-6, ismear=1, sigma=0.1, ispin=2, lreal="Auto", nelm=120,
                    lwave=False, lcharg=False)

    result = relax_active(atoms, "sevennet-0", parent=vasp_parent, fmax=0.03)

Keep ``ediff`` tight (1e-6 eV or lower): parent forces must be converged well below ``fmax``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

from .errors import UmlipError
from .io import ModelInfo, attach_model_info, model_info

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

Parent = Union["Calculator", Callable[["Atoms"], "Calculator"]]

#: Initial magnetic moments (an SCF starting guess, not a reference value) for spin-polarised parents.
INITIAL_MAGMOMS_BOHR = {"Fe": 3.0, "Co": 2.0, "Ni": 1.0, "Mn": 3.0, "Cr": 2.0}


class ParentFailed(UmlipError, RuntimeError):
    """The parent calculator raised (SCF not converged, crashed job, ...)."""


def emt_parent() -> "Calculator":
    """ASE's effective-medium theory: a real, nearly free parent for Ni, Cu, Al, Pd, Ag, Pt, Au (+H, C, N, O)."""
    from ase.calculators.emt import EMT

    return attach_model_info(EMT(), ModelInfo(name="emt", family="emt", version="ase"))


class GPAWParent:
    """Builds a fresh plane-wave PBE GPAW calculator for each structure (see :func:`gpaw_parent`)."""

    def __init__(self, kpts_density: float, ecut_ev: float, spin: bool | Literal["auto"], smearing_ev: float,
                 txt: str | None, convergence: dict[str, float]):
        self.kpts_density = kpts_density
        self.ecut_ev = ecut_ev
        self.spin = spin
        self.smearing_ev = smearing_ev
        self.txt = txt
        self.convergence = convergence
        attach_model_info(self, ModelInfo(name="gpaw-pbe", family="gpaw", version=_gpaw_version(), details={
            "ecut_ev": ecut_ev, "kpts_density_per_inv_angstrom": kpts_density}))

    def __call__(self, atoms: "Atoms") -> "Calculator":
        from gpaw import GPAW, PW, FermiDirac

        spinpol = self.spin if self.spin != "auto" else any(s in INITIAL_MAGMOMS_BOHR for s in
                                                             atoms.get_chemical_symbols())
        if spinpol and not atoms.get_initial_magnetic_moments().any():
            atoms.set_initial_magnetic_moments([INITIAL_MAGMOMS_BOHR.get(s, 0.0)
                                                for s in atoms.get_chemical_symbols()])
        extra = {} if point_group_keeps_grid(atoms, self.ecut_ev) else {"symmetry": {"point_group": False}}
        return GPAW(mode=PW(self.ecut_ev), xc="PBE", kpts={"density": self.kpts_density, "gamma": True},
                    occupations=FermiDirac(self.smearing_ev), spinpol=bool(spinpol),
                    convergence=self.convergence, txt=self.txt, **extra)


def point_group_keeps_grid(atoms: "Atoms", ecut_ev: float, max_growth: float = 2.0) -> bool:
    """False when GPAW's point-group symmetry would force a grid over ``max_growth`` times the plane-wave one.

    A symmetry operation that maps a cell axis onto a combination of others (a tilted stacking-fault column at u = 1)
    makes GPAW use the same number of points along the related axes: (14, 14, 96) becomes (96, 96, 96), about 50x the
    cost. Without the point group (time reversal kept) the k-points double instead; the energy is the same.
    """
    import warnings

    import numpy as np
    from ase.units import Bohr
    from gpaw import PW
    from gpaw.symmetry import Symmetry
    from gpaw.utilities.gpts import get_number_of_grid_points

    cell_bohr = atoms.cell.array / Bohr
    symmetry = Symmetry(atoms.numbers, cell_bohr, atoms.pbc)
    symmetry.analyze(atoms.get_scaled_positions())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = get_number_of_grid_points(cell_bohr, mode=PW(ecut_ev))
        symmetric = get_number_of_grid_points(cell_bohr, mode=PW(ecut_ev), symmetry=symmetry)
    return float(np.prod(symmetric)) <= max_growth * float(np.prod(plain))


def _gpaw_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("gpaw")
    except Exception:
        return None


def gpaw_parent(kpts_density: float = 4.0, ecut_ev: float = 500.0, spin: bool | Literal["auto"] = "auto",
                smearing_ev: float = 0.1, txt: str | None = None, forces_tol_ev_per_angstrom: float = 0.005
                ) -> GPAWParent:
    """A GPAW PBE parent (plane waves, ``ecut_ev``; k-points ``kpts_density`` per Å⁻¹, Γ-centred).

    Practical for 1-8 atom cells on a CPU (a 1-atom Ni cell at 500 eV takes seconds to minutes per point).
    ``spin="auto"`` turns on spin polarisation when Fe, Co, Ni, Mn or Cr is present. Install GPAW with
    ``scripts/install_gpaw.sh``; run with ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (threaded BLAS is far slower).
    """
    try:
        import gpaw  # noqa: F401
    except ImportError as exc:
        raise UmlipError("GPAW is not installed; run scripts/install_gpaw.sh [VENV]") from exc
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return GPAWParent(kpts_density, ecut_ev, spin, smearing_ev, txt, {"forces": forces_tol_ev_per_angstrom})


class LabelledFramesParent:
    """An offline parent: answers each structure with the labels of the nearest frame of a labelled dataset.

    See :func:`labelled_frames_parent`. ``matches`` lists (frame index, RMSD Å) of every call, so the error of
    the lookup can be reported next to any result obtained with it.
    """

    def __init__(self, dataset, max_rmsd_angstrom: float | None):
        self.frames = list(dataset)
        if not self.frames:
            raise UmlipError("labelled_frames_parent: the dataset holds no frames")
        self.max_rmsd_angstrom = max_rmsd_angstrom
        self.matches: list[tuple[int, float]] = []
        attach_model_info(self, ModelInfo(name="labelled-frames", family="lookup", version=(
            f"{len(self.frames)} frames of {getattr(dataset, 'name', '') or 'a dataset'}")))

    def nearest(self, atoms: "Atoms") -> tuple[int, float]:
        """(index, RMSD Å) of the frame with the same atoms in the same order nearest to ``atoms`` (minimum image)."""
        import numpy as np

        best, best_rmsd = -1, np.inf
        for k, frame in enumerate(self.frames):
            if len(frame.atoms) != len(atoms) or not np.array_equal(frame.atoms.numbers, atoms.numbers):
                continue
            delta = atoms.positions - frame.atoms.positions
            if frame.atoms.cell.rank == 3:
                fractional = np.linalg.solve(frame.atoms.cell.array.T, delta.T).T
                fractional -= np.round(fractional) * frame.atoms.pbc
                delta = fractional @ frame.atoms.cell.array
            rmsd = float(np.sqrt((delta ** 2).sum(axis=1).mean()))
            if rmsd < best_rmsd:
                best, best_rmsd = k, rmsd
        if best < 0:
            raise ParentFailed(f"labelled-frames parent: no frame holds {atoms.get_chemical_formula()} with the "
                               "same atom order")
        if self.max_rmsd_angstrom is not None and best_rmsd > self.max_rmsd_angstrom:
            raise ParentFailed(f"labelled-frames parent: the nearest frame ({self.frames[best].where()}) is "
                               f"{best_rmsd:.3f} Å RMSD away (> max_rmsd_angstrom={self.max_rmsd_angstrom})")
        return best, best_rmsd

    def __call__(self, atoms: "Atoms") -> "Calculator":
        from ase.calculators.singlepoint import SinglePointCalculator

        index, rmsd = self.nearest(atoms)
        self.matches.append((index, rmsd))
        frame = self.frames[index]
        results = {"energy": frame.energy_ev, "forces": frame.forces_ev_per_angstrom}
        if frame.stress_ev_per_angstrom3 is not None:
            results["stress"] = frame.stress_ev_per_angstrom3
        return SinglePointCalculator(atoms, **results)


def labelled_frames_parent(dataset, max_rmsd_angstrom: float | None = None) -> LabelledFramesParent:
    """An offline "parent" made from labelled DFT frames (a :class:`~umlip_helpers.data.DFTDataset`, a list of
    LabelledFrame, or a file path): each structure gets the energy, forces (and stress) of the nearest frame with the
    same atoms in the same order (RMSD under the minimum-image convention).

    Limitation: the labels are those of the nearest frame, not of the structure asked about. They are only as good as
    the dataset is dense around it: check ``parent.matches`` (RMSDs) and set ``max_rmsd_angstrom`` to refuse far
    matches. Use it to rehearse a workflow on existing data (e.g. MD frames of YMnO3), never as a substitute for DFT
    on configurations the dataset does not hold.
    """
    import os

    if isinstance(dataset, (str, os.PathLike)):
        from .data import read_dataset

        dataset = read_dataset(dataset, require=("energy", "forces"))
    return LabelledFramesParent(dataset, max_rmsd_angstrom)


def make_parent(name: Literal["emt", "gpaw", "labelled"], **options: Any) -> Parent:
    """The parent a name on the command line means (``labelled`` takes ``dataset=`` a file or DFTDataset)."""
    if name == "emt":
        return emt_parent()
    if name == "gpaw":
        return gpaw_parent(**options)
    if name == "labelled":
        return labelled_frames_parent(**options)
    raise ValueError(f"unknown parent {name!r}; choose emt or gpaw (or labelled, with dataset=...), or pass any "
                     "ASE calculator")


def parent_info(parent: Parent) -> dict[str, Any]:
    return model_info(parent).to_dict()


def parent_single_point(parent: Parent, atoms: "Atoms") -> tuple[float, "Any"]:
    """(energy eV, forces eV/Å) of ``atoms`` from the parent, on a copy; any failure becomes ParentFailed."""
    from ase.calculators.calculator import BaseCalculator

    work = atoms.copy()
    try:
        work.calc = parent if isinstance(parent, BaseCalculator) else parent(work)
        energy = float(work.get_potential_energy())
        forces = work.get_forces(apply_constraint=False).copy()
    except Exception as exc:
        raise ParentFailed(f"parent {parent_info(parent)['name']} failed on {work.get_chemical_formula()}: "
                           f"{type(exc).__name__}: {exc}") from exc
    return energy, forces


def parent_label(parent: Parent, atoms: "Atoms", source: str, index: int) -> "Any":
    """``atoms`` labelled by the parent (energy, forces) as a :class:`~umlip_helpers.data.LabelledFrame`."""
    from .data import LabelledFrame

    energy, forces = parent_single_point(parent, atoms)
    clean = atoms.copy()
    clean.calc = None
    return LabelledFrame(clean, energy, forces, None, source, index)


class FreshParentCalculator:
    """An ASE calculator that evaluates every new structure with a fresh calculator from a parent factory."""

    def __new__(cls, factory: Callable[["Atoms"], "Calculator"]):
        from ase.calculators.calculator import Calculator, all_changes

        class _Fresh(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                energy, forces = parent_single_point(factory, self.atoms)
                self.results = {"energy": energy, "forces": forces}

        calc = _Fresh()
        return attach_model_info(calc, model_info(factory))


def parent_calculator(parent: Parent) -> "Calculator":
    """``parent`` as one ASE calculator: itself if it is one, else a :class:`FreshParentCalculator` of the factory.
    Either caches its last result, so asking again for the same structure costs no parent call."""
    from ase.calculators.calculator import BaseCalculator

    return parent if isinstance(parent, BaseCalculator) else FreshParentCalculator(parent)
