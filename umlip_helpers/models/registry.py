"""Every model umlip-book knows by name, with the metadata a reader needs to cite and obtain it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..errors import UnknownModel

#: Where user-supplied checkpoints are looked for, in order, after an explicit path.
MODEL_DIR_ENV = "UMLIP_MODEL_DIR"


def model_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(MODEL_DIR_ENV, "").split(os.pathsep) if p]
    return dirs + [Path.home() / ".cache" / "umlip" / "models"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    version: str
    training_data: str
    licence: str
    citation: str
    doi: str
    #: file name of the checkpoint; None when the weights ship inside the family's wheel
    weights_file: str | None = None
    #: sha256 of the published checkpoint, when known
    sha256: str | None = None
    #: how to obtain the checkpoint on a machine with internet
    how_to_get: str = ""
    #: keyword arguments passed to the family's ``load``
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ships_with_package(self) -> bool:
        return self.weights_file is None

    def candidate_paths(self) -> list[Path]:
        if self.weights_file is None:
            return []
        return [d / self.weights_file for d in model_dirs()]

    def find_weights(self) -> Path | None:
        return next((p for p in self.candidate_paths() if p.is_file()), None)


_MACE_HOWTO = (
    "On a machine with internet, download {file} from release 'mace_mp_0' of the ACEsuit/mace-mp GitHub "
    "repository (github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/{file}) and put it in "
    "$UMLIP_MODEL_DIR or ~/.cache/umlip/models/. (mace_mp() caches it under a mangled name in ~/.cache/mace/.)"
)

MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


for _spec in (
    ModelSpec("sevennet-0", "sevennet", "0 (2024-07-11)", "MPtrj (PBE/PBE+U)", "GPL-3.0",
              "Park et al., J. Chem. Theory Comput. 20, 4857 (2024)", "10.1021/acs.jctc.4c00190",
              options={"model": "7net-0"}),
    ModelSpec("sevennet-l3i5", "sevennet", "l3i5", "MPtrj (PBE/PBE+U)", "GPL-3.0",
              "Park et al., J. Chem. Theory Comput. 20, 4857 (2024)", "10.1021/acs.jctc.4c00190",
              options={"model": "7net-l3i5"}),
    ModelSpec("sevennet-mf-0", "sevennet", "mf-0, PBE modality", "MPtrj + MP r2SCAN (multi-fidelity)", "GPL-3.0",
              "Kim et al., J. Am. Chem. Soc. 147, 1042 (2025)", "10.1021/jacs.4c14455",
              options={"model": "7net-mf-0", "modal": "PBE"}),
    ModelSpec("chgnet-0.3.0", "chgnet", "0.3.0", "MPtrj (PBE/PBE+U)", "BSD-3-Clause",
              "Deng et al., Nat. Mach. Intell. 5, 1031 (2023)", "10.1038/s42256-023-00716-3",
              options={"model": "0.3.0"}),
    ModelSpec("chgnet-r2scan", "chgnet", "r2scan", "MPtrj then MP r2SCAN (transfer learning)", "BSD-3-Clause",
              "Huang et al., Phys. Rev. B (2025), arXiv:2410.07477", "10.48550/arXiv.2410.07477",
              options={"model": "r2scan"}),
    ModelSpec("mace-mp-0-small", "mace", "mace_mp_0 small", "MPtrj (PBE/PBE+U)", "MIT",
              "Batatia et al., arXiv:2401.00096 (2023)", "10.48550/arXiv.2401.00096",
              weights_file="2023-12-10-mace-128-L0_energy_epoch-249.model",
              how_to_get=_MACE_HOWTO.format(file="2023-12-10-mace-128-L0_energy_epoch-249.model")),
    ModelSpec("mace-mp-0-medium", "mace", "mace_mp_0 medium", "MPtrj (PBE/PBE+U)", "MIT",
              "Batatia et al., arXiv:2401.00096 (2023)", "10.48550/arXiv.2401.00096",
              weights_file="2023-12-03-mace-128-L1_epoch-199.model",
              how_to_get=_MACE_HOWTO.format(file="2023-12-03-mace-128-L1_epoch-199.model")),
    ModelSpec("mace-mp-0-large", "mace", "mace_mp_0 large", "MPtrj (PBE/PBE+U)", "MIT",
              "Batatia et al., arXiv:2401.00096 (2023)", "10.48550/arXiv.2401.00096",
              weights_file="MACE_MPtrj_2022.9.model",
              how_to_get=_MACE_HOWTO.format(file="MACE_MPtrj_2022.9.model")),
    ModelSpec("uma-s-1p1", "fairchem", "UMA small 1.1", "OMat24, OMol25, OC20, ODAC23, OMC25", "FAIR Chemistry License",
              "Wood et al., arXiv:2506.23971 (2025)", "10.48550/arXiv.2506.23971",
              weights_file="uma-s-1p1.pt",
              how_to_get=("Accept the licence of the gated Hugging Face repository facebook/UMA, log in "
                          "(`hf auth login`), run `hf download facebook/UMA checkpoints/uma-s-1p1.pt --local-dir DIR` "
                          "and move DIR/checkpoints/uma-s-1p1.pt into $UMLIP_MODEL_DIR or ~/.cache/umlip/models/."),
              options={"task_name": "omat"}),
    ModelSpec("pet-mad", "upet", "PET-MAD 1.0.2 (small)", "MAD (Massive Atomistic Diversity, PBEsol)",
              "BSD-3-Clause", "Mazitov et al., Nat. Commun. (2025), arXiv:2503.14118",
              "10.1038/s41467-025-65662-7",
              weights_file="pet-mad-s-v1.0.2.ckpt",
              how_to_get=("On a machine with internet: `hf download lab-cosmo/upet models/pet-mad-s-v1.0.2.ckpt "
                          "--local-dir DIR` and move the .ckpt into $UMLIP_MODEL_DIR or ~/.cache/umlip/models/; or "
                          "`python -c \"from upet import save_upet; save_upet(model='pet-mad', size='s', "
                          "version='1.0.2', output='pet-mad-s-v1.0.2.pt')\"` for the exported model (pass its path).")),
    ModelSpec("allegro-fm", "nequip", "Allegro-FM", "OMat24 + sAlex + MPtrj (PBE)", "MIT",
              "Nomura et al., arXiv:2502.06073 (2025)", "10.48550/arXiv.2502.06073",
              weights_file="allegro-fm.nequip.zip",
              how_to_get=("Package Allegro-FM for nequip 0.19 (`nequip-package`, which writes a .nequip.zip) and "
                          "save it as allegro-fm.nequip.zip in $UMLIP_MODEL_DIR or ~/.cache/umlip/models/. Deployed "
                          "files made with nequip 0.6 do not load in nequip 0.19. Any packaged NequIP or Allegro model "
                          "(for example one from nequip.net) loads by its path.")),
    ModelSpec("emt", "emt", "ase " + "EMT", "fitted to experiment (Jacobsen, Stoltze, Norskov 1996)", "LGPL-2.1 (ASE)",
              "Jacobsen, Stoltze, Norskov, Surf. Sci. 366, 394 (1996)", "10.1016/0039-6028(96)00816-3"),
):
    register(_spec)

DEFAULT_MODEL = "sevennet-0"

#: Names users type that mean a registered model.
ALIASES = {
    "7net-0": "sevennet-0", "sevennet": "sevennet-0", "chgnet": "chgnet-0.3.0",
    "mace-mp-0": "mace-mp-0-medium", "mace-mp-0-medium": "mace-mp-0-medium", "uma": "uma-s-1p1",
    "pet-mad-s": "pet-mad", "allegro": "allegro-fm",
}


def get_spec(name: str) -> ModelSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in MODELS:
        raise UnknownModel(
            f"unknown model {name!r}: known models are {', '.join(sorted(MODELS))}; "
            "a checkpoint file or a fine-tuned output directory can be given by its path instead"
        )
    return MODELS[key]
