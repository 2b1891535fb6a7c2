"""What an MD run returns (:class:`MDResult`): its log as arrays and headline numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import Atoms

from ..errors import UmlipError
from ..results import Result


@dataclasses.dataclass(frozen=True)
class MDResult(Result):
    """An MD run: its log as arrays (every ``log_interval`` steps, over the whole run including earlier sessions
    of a resumed run) and headline numbers. ``conserved_ev`` is the total energy in NVE, the extended-system
    energy for Nosé-Hoover and MTK, E minus the energy exchanged with the bath for Bussi, and NaN for Langevin."""

    ensemble: str
    thermostat: str
    target_temperature_k: float
    timestep_fs: float
    n_atoms: int
    steps_completed: int
    steps_this_session: int
    resumed_from_step: int
    step: np.ndarray
    time_ps: np.ndarray
    epot_ev: np.ndarray
    ekin_ev: np.ndarray
    etot_ev: np.ndarray
    conserved_ev: np.ndarray
    temperature_k: np.ndarray
    pressure_gpa: np.ndarray
    volume_angstrom3: np.ndarray
    #: mean and standard deviation of the temperature over the second half of the log
    mean_temperature_k: float
    std_temperature_k: float
    #: slope of a straight-line fit of ``conserved_ev`` per atom against time (NaN when nothing is conserved)
    energy_drift_mev_per_atom_per_ps: float
    #: atoms x steps per second of wall time, this session only
    throughput_atom_steps_per_s: float
    wall_time_s: float
    trajectory_path: str | None
    log_path: str | None
    provenance: dict

    summary_fields = ("ensemble", "thermostat", "target_temperature_k", "timestep_fs", "n_atoms", "steps_completed",
                      "mean_temperature_k", "std_temperature_k", "energy_drift_mev_per_atom_per_ps",
                      "throughput_atom_steps_per_s", "wall_time_s")

    def frames(self, index: str = ":") -> list[Atoms]:
        """The trajectory's frames (``index`` as in ``ase.io.read``)."""
        if self.trajectory_path is None:
            raise UmlipError("this run wrote no trajectory (out_dir was None)")
        from ase.io import read

        return read(self.trajectory_path, index)

    def plot(self, ax=None):
        """Temperature and energies against time (two axes; pass a pair to draw into your own)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        ax_t, ax_e = ax
        ax_t.plot(self.time_ps, self.temperature_k, lw=0.8)
        ax_t.axhline(self.target_temperature_k, color="grey", ls=":", lw=0.8)
        ax_t.set_xlabel("time (ps)")
        ax_t.set_ylabel("T (K)")
        ax_t.set_title(f"{self.ensemble.upper()} ({self.thermostat})")
        reference = self.etot_ev[0] if len(self.etot_ev) else 0.0
        per_atom = 1000.0 / self.n_atoms
        ax_e.plot(self.time_ps, (self.epot_ev - reference) * per_atom, lw=0.8, label="E_pot")
        ax_e.plot(self.time_ps, (self.etot_ev - reference) * per_atom, lw=0.8, label="E_tot")
        if np.isfinite(self.conserved_ev).any():
            ax_e.plot(self.time_ps, (self.conserved_ev - self.conserved_ev[0]) * per_atom, lw=0.8, label="conserved")
        ax_e.set_xlabel("time (ps)")
        ax_e.set_ylabel("E - E_tot(0) (meV/atom)")
        ax_e.legend(fontsize="small")
        return ax
