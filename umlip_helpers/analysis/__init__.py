"""Structure analysis of MD frames: partial RDFs with coordination numbers, bond-angle distributions, MSD and
diffusion coefficients; first-shell distances of a crystal (the reference values of
notebook 05); plus the explicit readers of the shipped tobermorite cell and of a CIF's fully occupied sites.

Pairs come from vesin's neighbour list (C++, O(N)), so no function here loops over atoms in Python.
The MD analyses average over the frames they are given (an ``Atoms`` or a list of them, e.g.
``ase.io.read(traj, ":")``).
"""

from .angles import AngleResult, angle_distribution
from .diffusion import ANGSTROM2_PER_PS_IN_CM2_PER_S, DiffusionResult, mean_squared_displacement
from .neighbours import closest_pair, neighbor_pairs
from .rdf import (PEAK_QUANTITY_PREFIX, FirstShellResult, RDFResult, compare_peaks, first_shell_distances,
                  literature_peaks, partial_rdf)
from .structures import (TOBERMORITE14_CIF, TOBERMORITE_FILE, TOBERMORITE_LITERATURE, read_crystal_structure,
                         read_tobermorite)

__all__ = ["ANGSTROM2_PER_PS_IN_CM2_PER_S", "PEAK_QUANTITY_PREFIX", "TOBERMORITE14_CIF", "TOBERMORITE_FILE",
           "TOBERMORITE_LITERATURE", "AngleResult", "DiffusionResult", "FirstShellResult", "RDFResult",
           "angle_distribution", "closest_pair", "compare_peaks", "first_shell_distances", "literature_peaks",
           "mean_squared_displacement", "neighbor_pairs", "partial_rdf", "read_crystal_structure", "read_tobermorite"]
