"""The ASE integrator of each ensemble and thermostat, its random stream, and what a step reads from the
calculator's last evaluation (energy, forces, stress, the conserved energy, the pressure)."""

from __future__ import annotations

import numpy as np
from ase import Atoms, units


def make_dynamics(atoms: Atoms, ensemble: str, thermostat: str, temperature_k: float, timestep_fs: float,
                   friction_per_fs: float, tdamp_fs: float, pressure_gpa: float, pdamp_fs: float, npt_cell: str,
                   rng: np.random.Generator):
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "npt":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT, MTKNPT

        integrator = MTKNPT if npt_cell == "full" else IsotropicMTKNPT
        return integrator(atoms, timestep=dt, temperature_K=temperature_k, pressure_au=pressure_gpa * units.GPa,
                          tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    if thermostat == "langevin":
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        if not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint([*atoms.constraints, FixCom()])
        return Langevin(atoms, timestep=dt, temperature_K=temperature_k, friction=friction_per_fs / units.fs,
                        fixcm=False, rng=rng)
    if thermostat == "nose-hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_k, tdamp=tdamp_fs * units.fs)
    from ase.md.bussi import Bussi

    return Bussi(atoms, timestep=dt, temperature_K=temperature_k, taut=tdamp_fs * units.fs, rng=rng)


def noise_rng(seed: int, step: int) -> np.random.Generator:
    """The thermostat's random stream from ``step`` on. It must differ from the velocity stream
    ``default_rng(seed)``: ``default_rng([seed, 0])`` is that very stream, and kicks equal to the initial velocity
    draws heat the system coherently."""
    return np.random.default_rng([seed, step, 1])


def conserved_energy(dyn, atoms: Atoms, etot: float) -> float:
    if hasattr(dyn, "get_conserved_energy"):
        return float(dyn.get_conserved_energy())
    if hasattr(dyn, "transferred_energy"):
        return etot - float(dyn.transferred_energy)
    if type(dyn).__name__ == "VelocityVerlet":
        return etot
    return float("nan")


def latest(atoms: Atoms, name: str):
    """``name`` from the calculator's last evaluation, which the integrator has just made at these positions; this
    skips ASE's comparison of the whole Atoms on every property call. None if the calculator cannot give it."""
    from ase.calculators.calculator import PropertyNotImplementedError

    value = atoms.calc.results.get(name)
    if value is None:
        try:
            value = atoms.calc.get_property(name, atoms)
        except PropertyNotImplementedError:
            return None
    return value


def pressure_gpa(atoms: Atoms, ekin: float, volume: float) -> float:
    """Pressure including the kinetic (ideal-gas) term 2 E_kin / 3V (NaN without a 3D cell or a stress)."""
    stress = latest(atoms, "stress") if np.isfinite(volume) else None
    if stress is None:
        return float("nan")
    stress = np.asarray(stress)
    trace = np.trace(stress) if stress.shape == (3, 3) else stress[:3].sum()
    return float((-trace / 3.0 + 2.0 * ekin / (3.0 * volume)) / units.GPa)
