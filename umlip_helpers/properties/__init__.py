"""Property workflows: each takes Atoms and a calculator and returns a frozen Result with units in its field names."""

from .alloys import l12_compound, random_solid_solution, solid_solution_scan
from .defects import adsorption_energies, generalized_stacking_fault, surface_energies, vacancy_formation_energy
from .elastic import ElasticResult, elastic_constants
from .eos import DeltaBenchmarkResult, EOSFitError, EOSResult, delta_benchmark, delta_gauge, eos
from .phonons import PhononResult, phonons
from .phonon_finetune import PhononFinetuneResult, phonon_finetune, rattled_supercells
from .relax import RelaxationNotConverged, RelaxResult, relax

__all__ = ["DeltaBenchmarkResult", "EOSFitError", "EOSResult", "ElasticResult", "PhononResult",
           "RelaxResult", "RelaxationNotConverged", "adsorption_energies", "delta_benchmark", "delta_gauge",
           "elastic_constants", "eos", "generalized_stacking_fault", "l12_compound", "phonons",
           "random_solid_solution", "relax", "solid_solution_scan", "surface_energies",
           "vacancy_formation_energy"]
__all__ += ["PhononFinetuneResult", "phonon_finetune", "rattled_supercells"]
