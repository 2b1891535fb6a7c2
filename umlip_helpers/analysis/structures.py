"""The shipped tobermorite cell and a CIF's fully occupied sites, read explicitly (what the MD and the first-shell
analyses of notebook 05 start from)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import DataValidationError
from ..paths import data_path

TOBERMORITE_FILE = data_path("tobermorite", "tobermorite_352.xyz")
TOBERMORITE_LITERATURE = data_path("references", "tobermorite_literature.csv")
#: tobermorite 14 Å (Bonaccorsi et al. 2005) as COD entry 9013974; the crystal reference of the first-shell distances
TOBERMORITE14_CIF = TOBERMORITE_LITERATURE.parent / "tobermorite14_cod9013974.cif"


def read_crystal_structure(path: str | Path = TOBERMORITE14_CIF, min_occupancy: float = 1.0) -> Atoms:
    """A CIF's conventional cell (``ase.io.read(..., format="cif")``), keeping only the atoms on sites whose
    occupancy is at least ``min_occupancy``.

    ASE places an atom at every symmetry copy of a partly occupied site, so distances to and between such copies
    describe no real cell: with the default only fully occupied sites stay. In the tobermorite 14 Å entry that
    drops the interlayer Ca2 (occupancy 0.5). Each atom gets ``arrays["site_label"]`` and
    ``arrays["site_occupancy"]``; ``info["dropped_sites"]`` maps each dropped label to its occupancy. A site
    shared by two elements raises DataValidationError naming it.
    """
    from ase.io import read

    path = Path(path)
    atoms = read(path, format="cif", store_tags=True)
    labels = list(atoms.info["_atom_site_label"])
    occupancy = atoms.info.get("occupancy") or {}
    site_occupancy, problems = [], []
    for site, label in enumerate(labels):
        species = occupancy.get(str(site), {})
        if len(species) > 1:
            problems.append((str(path), None, f"site {label}", f"shared by {sorted(species)}; not supported"))
        site_occupancy.append(float(next(iter(species.values()), 1.0)))
    if problems:
        raise DataValidationError(problems)
    kinds = atoms.arrays["spacegroup_kinds"]
    atoms.arrays["site_label"] = np.asarray(labels)[kinds]
    atoms.arrays["site_occupancy"] = np.asarray(site_occupancy)[kinds]
    kept = atoms[atoms.arrays["site_occupancy"] >= min_occupancy]
    if len(kept) == 0:
        raise DataValidationError([(str(path), None, "_atom_site_occupancy",
                                    f"no site has occupancy >= {min_occupancy}")])
    kept.info = {"source": path.name, "spacegroup": atoms.info.get("spacegroup"),
                 "dropped_sites": {label: occ for label, occ in zip(labels, site_occupancy) if occ < min_occupancy}}
    return kept


def read_tobermorite(path: str | Path = TOBERMORITE_FILE, keep_unknown_columns: bool = False) -> Atoms:
    """Read the shipped tobermorite cell explicitly, column by column (see data/README.md).

    Each row is ``symbol x y z c4 u1 u2 u3 w1 w2 w3 id``: Cartesian positions in Å, a column that is zero for
    every atom, six numbers of unknown meaning (they are not velocities or forces consistent with this
    structure; see data/README.md) and the 1-based atom index of the source. The header declares only
    ``species pos``, so ``ase.io.read`` silently drops the rest; this reader checks every row instead.
    The source index goes to ``atoms.arrays["source_id"]``; ``keep_unknown_columns`` also keeps the six numbers
    as ``unknown_a`` and ``unknown_b`` (N x 3 each).
    """
    from ase.io.extxyz import key_val_str_to_dict

    path = Path(path)
    lines = path.read_text().splitlines()
    name = str(path)
    problems: list[tuple[str, int | None, str, str]] = []
    try:
        n_atoms = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise DataValidationError([(name, 0, "atom count", f"first line {lines[:1]!r} is not an atom count")])
    header = key_val_str_to_dict(lines[1])
    if "Lattice" not in header or not re.search(r'Lattice="([^"]*)"', lines[1]):
        raise DataValidationError([(name, 0, "Lattice", "the comment line has no Lattice=")])
    rows = [line.split() for line in lines[2:2 + n_atoms]]
    if len(rows) != n_atoms:
        problems.append((name, 0, "atoms", f"header says {n_atoms} atoms, file has {len(rows)} rows"))
    for k, row in enumerate(rows):
        if len(row) != 12:
            problems.append((name, 0, f"row {k + 3}", f"expected a symbol and 11 numbers, got {len(row)} fields"))
    if problems:
        raise DataValidationError(problems)
    symbols = [row[0] for row in rows]
    numbers = np.array([[float(x) for x in row[1:]] for row in rows])
    if np.any(numbers[:, 3] != 0.0):
        problems.append((name, 0, "column 5", "expected zero for every atom"))
    if not np.array_equal(numbers[:, 10], np.arange(1, n_atoms + 1)):
        problems.append((name, 0, "column 12", "expected the atom index 1..N"))
    if not np.all(np.isfinite(numbers)):
        problems.append((name, 0, "numbers", "non-finite values"))
    if problems:
        raise DataValidationError(problems)
    pbc = header.get("pbc", np.array([True, True, True]))
    lattice = re.search(r'Lattice="([^"]*)"', lines[1]).group(1).split()
    # extxyz: the three lattice vectors one after the other (ase's parsed header holds the transpose)
    atoms = Atoms(symbols, positions=numbers[:, 0:3], cell=np.array(lattice, dtype=float).reshape(3, 3), pbc=pbc)
    atoms.arrays["source_id"] = numbers[:, 10].astype(int)
    if keep_unknown_columns:
        atoms.arrays["unknown_a"] = numbers[:, 4:7].copy()
        atoms.arrays["unknown_b"] = numbers[:, 7:10].copy()
    atoms.info["source"] = path.name
    return atoms
