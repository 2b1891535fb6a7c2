"""Property workflows: each takes Atoms and a calculator and returns a frozen Result with units in its field names.

One module per property (eos, elastic, phonons, vacancy, stacking_faults, surfaces, adsorption, alloys,
grain_boundaries, migration, phonon_finetune; relax underneath them all), each with ``compute(atoms, calc,
settings)`` and a frozen ``<Name>Settings`` dataclass, and a keyword form (``eos(atoms, calc, npoints=9)``);
``compare.compare_models`` runs one of them (``compare.PROPERTIES``) for several models; ``references`` compares
results with the literature in ``data/references``."""

from ._common import EV_PER_A2_TO_J_PER_M2, fcc_lattice_parameter
from .adsorption import AdsorptionResult, AdsorptionSettings, adsorption_energies
from .alloys import L12Settings, SolidSolutionSettings, l12_compound, random_solid_solution, solid_solution_scan
from .compare import PROPERTIES, ModelComparison, available_calculators, compare_models
from .elastic import ElasticResult, ElasticSettings, elastic_constants
from .eos import DeltaBenchmarkResult, EOSFitError, EOSResult, EOSSettings, delta_benchmark, delta_gauge, eos
from .grain_boundaries import GrainBoundaryResult, GrainBoundarySettings, grain_boundary_energy
from .migration import MigrationResult, MigrationSettings, vacancy_migration
from .phonon_finetune import PhononFinetuneResult, phonon_finetune, rattled_supercells
from .phonons import PhononResult, PhononSettings, phonons
from .references import compare_to_reference, comparison_rows, literature_values
from .relax import RelaxationNotConverged, RelaxResult, RelaxSettings, relax
from .stacking_faults import StackingFaultResult, StackingFaultSettings, generalized_stacking_fault
from .surfaces import SurfaceEnergyResult, SurfaceSettings, surface_energies
from .vacancy import VacancyResult, VacancySettings, vacancy_formation_energy

__all__ = ["DeltaBenchmarkResult", "EOSFitError", "EOSResult", "ElasticResult", "PhononResult",
           "RelaxResult", "RelaxationNotConverged", "adsorption_energies", "delta_benchmark", "delta_gauge",
           "elastic_constants", "eos", "generalized_stacking_fault", "l12_compound", "phonons",
           "random_solid_solution", "relax", "solid_solution_scan", "surface_energies",
           "vacancy_formation_energy"]
__all__ += ["PhononFinetuneResult", "phonon_finetune", "rattled_supercells"]
__all__ += ["EV_PER_A2_TO_J_PER_M2", "AdsorptionResult", "StackingFaultResult", "SurfaceEnergyResult", "VacancyResult",
            "compare_to_reference", "comparison_rows", "fcc_lattice_parameter", "literature_values"]
__all__ += ["GrainBoundaryResult", "GrainBoundarySettings", "MigrationResult", "MigrationSettings",
            "grain_boundary_energy", "vacancy_migration"]
__all__ += ["AdsorptionSettings", "ElasticSettings", "EOSSettings", "L12Settings", "ModelComparison", "PhononSettings",
            "PROPERTIES", "RelaxSettings", "SolidSolutionSettings", "StackingFaultSettings", "SurfaceSettings",
            "VacancySettings", "available_calculators", "compare_models"]
