"""Study profiles shared by a notebook and a benchmark: the settings each profile names and the structure and parent
it starts from. A notebook picks a profile with its ``profile`` parameter, the benchmark with ``--profile``.

Profiles that one notebook or one script alone uses stay beside it (the book's check wants a notebook's
``settings = {...}`` in the notebook); the ones here are read by both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import data_path

if TYPE_CHECKING:
    from ase import Atoms

    from .parents import Parent

#: Settings of notebook 07 and benchmarks/periodic_vs_naive.py. "ci": 4-atom Au, EMT parent, closed-form readout
#: fits (minutes on a laptop CPU); for Au SevenNet-0 is much stiffer than EMT, a strong bias. "full": 32-atom Au,
#: trainer fits (a GPU). "ymno3": real VASP frames through the nearest-frame lookup parent. "gpaw": 4-atom Au with
#: a GPAW PBE parent (about an hour on a CPU).
STUDY_PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(system="Au", repeat=1, parent="emt", model="sevennet-0", fit="readout", fit_options={},
               budget=6, n_trajectories=3, interval_steps=20, sampling_k=300.0, production_k=600.0,
               production_steps=100, eval_interval_steps=5, timestep_fs=2.0, parent_md=True),
    "full": dict(system="Au", repeat=2, parent="emt", model="sevennet-0", fit="head", fit_options={"epochs": 30},
                 budget=40, n_trajectories=8, interval_steps=50, sampling_k=300.0, production_k=600.0,
                 production_steps=2000, eval_interval_steps=20, timestep_fs=2.0, parent_md=True),
    "ymno3": dict(system="YMnO3", repeat=1, parent="labelled", model="sevennet-0", fit="readout", fit_options={},
                  budget=8, n_trajectories=4, interval_steps=10, sampling_k=300.0, production_k=600.0,
                  production_steps=40, eval_interval_steps=10, timestep_fs=1.0, parent_md=False),
    "gpaw": dict(system="Au", repeat=1, parent="gpaw", model="sevennet-0", fit="readout", fit_options={},
                 budget=6, n_trajectories=3, interval_steps=20, sampling_k=300.0, production_k=600.0,
                 production_steps=100, eval_interval_steps=20, timestep_fs=2.0, parent_md=False),
}


def study_setup(settings: dict[str, Any], ymno3_path: str | Path | None = None) -> tuple["Atoms", "Parent"]:
    """The starting structure and the parent a profile of :data:`STUDY_PROFILES` names; the YMnO3 frames are read
    from ``ymno3_path`` (default: the 200 shipped VASP frames, provenance in ``data/README.md``)."""
    from ase.build import bulk

    from .parents import make_parent

    if settings["system"] == "YMnO3":
        from .data import read_dataset

        dataset = read_dataset(ymno3_path or data_path("ymno3", "ymno3_vasp_200.xyz"), require=("energy", "forces"))
        atoms = dataset[0].atoms.copy()
        atoms.calc = None
        return atoms, make_parent("labelled", dataset=dataset)
    atoms = bulk(settings["system"], cubic=True).repeat(settings["repeat"])
    options = {"kpts_density": 3.0, "ecut_ev": 400.0} if settings["parent"] == "gpaw" else {}
    return atoms, make_parent(settings["parent"], **options)
