import json, sys, time
import numpy as np
from ase.build import bulk
from ase import units
from gpaw import GPAW, PW, FermiDirac

ecut, kd = float(sys.argv[1]), float(sys.argv[2])
SETUPS = {"Ni": sys.argv[3]} if len(sys.argv) > 3 else "paw"
out = {}
def calc(atoms, tag):
    atoms = atoms.copy()
    atoms.set_initial_magnetic_moments([0.6] * len(atoms))
    atoms.calc = GPAW(mode=PW(ecut), xc="PBE", kpts={"density": kd, "gamma": True}, occupations=FermiDirac(0.1),
                      setups=SETUPS, spinpol=True, convergence={"energy": 1e-6, "density": 1e-5}, txt=f"/tmp/niconv/{tag}_{ecut}_{kd}_{SETUPS}.txt")
    t = time.perf_counter()
    e = atoms.get_potential_energy() / len(atoms)
    s = atoms.get_stress(voigt=True) / units.GPa
    m = atoms.get_magnetic_moment() / len(atoms)
    out[tag] = {"e": e, "stress_gpa": s.tolist(), "magmom": m, "s": time.perf_counter() - t,
                "nibz": len(atoms.calc.get_ibz_k_points())}
a0 = 3.52
p = bulk("Ni", "fcc", a=a0)
calc(p, "v0")
q = bulk("Ni", "fcc", a=a0 * 1.02)
calc(q, "v+")
sh = p.copy(); eps = 0.01
F = np.eye(3); F[1, 2] = F[2, 1] = eps / 2  # cubic-frame shear: primitive cell in ase bulk is in cubic frame
sh.set_cell(p.cell.array @ F.T, scale_atoms=True)
calc(sh, "shear")
print(json.dumps({"ecut": ecut, "kd": kd, "setups": str(SETUPS), **out}))
