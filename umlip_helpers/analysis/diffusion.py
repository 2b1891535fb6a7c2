"""Mean squared displacement and diffusion coefficients of MD frames."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from ase import Atoms

from ..io import provenance
from ..results import Result
from .neighbours import as_frames

ANGSTROM2_PER_PS_IN_CM2_PER_S = 1e-4


@dataclasses.dataclass(frozen=True)
class DiffusionResult(Result):
    """Mean squared displacement per element and the Einstein diffusion coefficient D = slope / 6."""

    time_ps: np.ndarray
    msd_angstrom2: dict
    diffusion_cm2_per_s: dict
    fit_start_ps: float
    n_frames: int
    provenance: dict

    def summary(self):
        return {f"diffusion_cm2_per_s_{el}": value for el, value in self.diffusion_cm2_per_s.items()}

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        for element, msd in self.msd_angstrom2.items():
            ax.plot(self.time_ps, msd, label=f"{element}: D = {self.diffusion_cm2_per_s[element]:.2e} cm²/s")
        ax.axvline(self.fit_start_ps, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("lag time (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize="small")
        return ax


def mean_squared_displacement(frames: Sequence[Atoms], frame_interval_fs: float, elements: Sequence[str] | None = None,
                              fit_from: float = 0.3) -> DiffusionResult:
    """MSD(t) per element, averaged over atoms and over every time origin, and D from a straight-line fit of
    MSD against t over lags beyond ``fit_from`` (a fraction of the longest lag).

    Positions are unwrapped through the minimum-image change in fractional coordinates between consecutive frames,
    so frames must be close enough in time that no atom moves half a cell between them.
    """
    frames = as_frames(frames)
    if len(frames) < 3:
        raise ValueError(f"MSD needs at least 3 frames, got {len(frames)}")
    frac = np.array([at.cell.scaled_positions(at.positions) for at in frames])
    step = np.diff(frac, axis=0)
    step -= np.round(step)
    unwrapped_frac = np.concatenate([frac[:1], frac[:1] + np.cumsum(step, axis=0)])
    positions = np.einsum("fnk,fkl->fnl", unwrapped_frac, np.array([at.cell.array for at in frames]))
    sym = np.asarray(frames[0].get_chemical_symbols())
    elements = list(elements) if elements else sorted(set(sym))
    lags = np.arange(1, len(frames))
    time_ps = np.r_[0.0, lags * frame_interval_fs / 1000.0]
    msd, diffusion = {}, {}
    for element in elements:
        pos = positions[:, sym == element]
        if pos.shape[1] == 0:
            raise ValueError(f"element {element} is not in the frames")
        msd[element] = np.r_[0.0, [np.mean(np.sum((pos[lag:] - pos[:-lag]) ** 2, axis=-1)) for lag in lags]]
        fit = time_ps >= fit_from * time_ps[-1]
        slope = np.polyfit(time_ps[fit], msd[element][fit], 1)[0] if fit.sum() >= 2 else float("nan")
        diffusion[element] = float(slope / 6.0 * ANGSTROM2_PER_PS_IN_CM2_PER_S)
    return DiffusionResult(time_ps, msd, diffusion, float(fit_from * time_ps[-1]), len(frames),
                           provenance(None, frame_interval_fs=frame_interval_fs, elements=elements, fit_from=fit_from))
