"""Distillation (PFD) on YMnO3: a fine-tuned SevenNet-0 teacher labels configurations it generates, and small
students (MACE, SevenNet) are trained from scratch on them.

    python benchmarks/distillation.py [--profile ci|cpu|full] [--students mace,sevennet]
                                      [--out JSON]

Writes benchmarks/results/distillation.json (full profile) or distillation/<profile>.json.

Headline numbers, each measured in this one run: the MD speed of each student against the teacher on the same
120-atom cell (interleaved rounds, so machine load hits both alike), and each student's force MAE against held-out
VASP frames as a ratio to the teacher's on the same frames. Targets (issue 7): at least 20x faster, at most 1.5x
the teacher's force error. The chosen student is the fastest one meeting both targets, else the most accurate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from umlip_helpers.data import read_dataset  # noqa: E402
from umlip_helpers.distill import generate_configurations, label_with, md_speed, train_student  # noqa: E402
from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance, model_info  # noqa: E402
from umlip_helpers.metrics import evaluate  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.paths import data_path  # noqa: E402

DATA = data_path("ymno3", "ymno3_vasp_200.xyz")
TARGETS = {"md_speedup_min": 20.0, "force_mae_ratio_max": 1.5}
PROFILES = {
    # 2 CPU cores: a head-fine-tuned teacher on 2 frames, 24 teacher-labelled configurations, short student training
    "ci": {"n_test": 3, "n_teacher_train": 2, "teacher_strategy": "head", "teacher_epochs": 1, "n_starts": 2,
           "generation": {"temperatures_k": (600.0,), "md_steps": 4, "md_interval": 2,
                          "rattle_amplitudes_angstrom": (0.02, 0.05), "rattles_per_amplitude": 3,
                          "strains": (-0.01, 0.01)},
           "student_epochs": 12, "speed_steps": 3, "speed_rounds": 2, "supercell": None},
    # 2 CPU cores, ~20-30 minutes: the ci data with five times the student training, to see how far it converges
    "cpu": {"n_test": 3, "n_teacher_train": 2, "teacher_strategy": "head", "teacher_epochs": 1, "n_starts": 2,
            "generation": {"temperatures_k": (600.0,), "md_steps": 4, "md_interval": 2,
                           "rattle_amplitudes_angstrom": (0.02, 0.05), "rattles_per_amplitude": 3,
                           "strains": (-0.01, 0.01)},
            "student_epochs": 60, "speed_steps": 3, "speed_rounds": 2, "supercell": None},
    # GPU: LoRA teacher on 20 frames, ~500 configurations from MD at three temperatures, long student training
    "full": {"n_test": 40, "n_teacher_train": 20, "teacher_strategy": "lora", "teacher_epochs": 30, "n_starts": 10,
             "generation": {"temperatures_k": (300.0, 600.0, 900.0), "md_steps": 150, "md_interval": 10,
                            "rattle_amplitudes_angstrom": (0.02, 0.05), "rattles_per_amplitude": 3,
                            "strains": (-0.02, -0.01, 0.01, 0.02)},
             "student_epochs": 150, "speed_steps": 20, "speed_rounds": 3, "supercell": (2, 2, 1)},
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=tuple(PROFILES), default="ci")
    parser.add_argument("--teacher-base", default="sevennet-0")
    parser.add_argument("--students", default="mace,sevennet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default benchmarks/results/distillation[/<profile>].json")
    parser.add_argument("--workdir", default=None,
                        help="where the teacher and students are written (default: temporary)")
    args = parser.parse_args(argv)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / (
        "distillation.json" if args.profile == "full" else f"distillation/{args.profile}.json"))

    import torch

    from umlip_helpers.models import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = PROFILES[args.profile]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="distillation_"))
    started = time.perf_counter()

    frames = read_dataset(DATA, require=("energy", "forces", "stress"))
    order = np.random.default_rng(args.seed).permutation(len(frames))
    test = frames[order[:settings["n_test"]].tolist()]
    pool = frames[order[settings["n_test"]:].tolist()]
    teacher_train = pool[:settings["n_teacher_train"]]

    finetune(args.teacher_base, teacher_train, strategy=settings["teacher_strategy"], out=workdir / "teacher",
             epochs=settings["teacher_epochs"], batch_size=1, seed=args.seed, device=device)
    teacher = load_calculator(workdir / "teacher", device=device)
    t0 = time.perf_counter()
    starts = [frame.atoms for frame in pool[:settings["n_starts"]]]
    configurations = generate_configurations(starts, teacher, seed=args.seed, out_dir=workdir / "teacher_md",
                                             **settings["generation"])
    labels = label_with(teacher, configurations)
    labelling_s = time.perf_counter() - t0

    students, trainings = {}, {}
    for architecture in args.students.split(","):
        trainings[architecture] = train_student(labels, workdir / f"student_{architecture}", architecture=architecture,
                                                epochs=settings["student_epochs"], seed=args.seed, device=device,
                                                teacher={"name": model_info(teacher).name,
                                                         "sha256": model_info(teacher).sha256})
        students[architecture] = load_calculator(trainings[architecture].path, device=device)

    accuracy = {"teacher": evaluate(teacher, test)}
    accuracy |= {name: evaluate(calc, test) for name, calc in students.items()}
    systems = {"unit_cell": test[0].atoms}
    if settings["supercell"]:
        systems["supercell"] = test[0].atoms.repeat(settings["supercell"])
    speeds = {label: md_speed({"teacher": teacher, **students}, atoms, steps_per_round=settings["speed_steps"],
                              rounds=settings["speed_rounds"], seed=args.seed)
              for label, atoms in systems.items()}

    teacher_force = accuracy["teacher"].force_mae_ev_per_angstrom
    options = []
    for name, training in trainings.items():
        ratio = accuracy[name].force_mae_ev_per_angstrom / teacher_force
        speedup = speeds["unit_cell"].speedup[name]
        options.append({
            "architecture": name, "size": training.size, "n_parameters": training.n_parameters,
            "epochs_run": training.epochs_run, "seconds_per_epoch": training.seconds_per_epoch,
            "force_mae_vs_teacher_labels_ev_per_angstrom": training.force_mae_vs_labels_ev_per_angstrom,
            "force_mae_vs_dft_ev_per_angstrom": accuracy[name].force_mae_ev_per_angstrom,
            "energy_mae_vs_dft_mev_per_atom": accuracy[name].energy_mae_mev_per_atom,
            "stress_mae_vs_dft_gpa": accuracy[name].stress_mae_gpa,
            "force_mae_ratio_student_to_teacher": ratio,
            "md_ms_per_step": {label: s.ms_per_step[name] for label, s in speeds.items()},
            "md_speedup_over_teacher": {label: s.speedup[name] for label, s in speeds.items()},
            "meets_targets": {"speed": speedup >= TARGETS["md_speedup_min"],
                              "accuracy": ratio <= TARGETS["force_mae_ratio_max"]},
        })
    passing = [o for o in options if all(o["meets_targets"].values())]
    chosen = (max(passing, key=lambda o: o["md_speedup_over_teacher"]["unit_cell"]) if passing
              else min(options, key=lambda o: o["force_mae_ratio_student_to_teacher"]))
    result = {
        "benchmark": "distillation", "profile": args.profile, "settings": settings, "targets": TARGETS,
        "headline": {
            "chosen_student": chosen["architecture"],
            "md_speedup_student_over_teacher": chosen["md_speedup_over_teacher"]["unit_cell"],
            "force_mae_ratio_student_to_teacher": chosen["force_mae_ratio_student_to_teacher"],
            "meets_targets": chosen["meets_targets"],
            "system": f"{systems['unit_cell'].get_chemical_formula()} ({len(systems['unit_cell'])} atoms), NVT MD",
        },
        "teacher": {"base": args.teacher_base, "strategy": settings["teacher_strategy"],
                    "n_train_frames": len(teacher_train), "sha256": model_info(teacher).sha256,
                    "force_mae_vs_dft_ev_per_angstrom": teacher_force,
                    "energy_mae_vs_dft_mev_per_atom": accuracy["teacher"].energy_mae_mev_per_atom,
                    "stress_mae_vs_dft_gpa": accuracy["teacher"].stress_mae_gpa,
                    "md_ms_per_step": {label: s.ms_per_step["teacher"] for label, s in speeds.items()}},
        "students": options,
        "labels": {"n_configurations": len(labels), "sha256": labels.sha256(), "labelling_seconds": labelling_s},
        "data": {"file": f"data/ymno3/{DATA.name}", "test_frames": len(test), "test_sha256": test.sha256()},
        "speed": {label: s.to_dict() for label, s in speeds.items()},
        "wall_time_s": time.perf_counter() - started,
        "provenance": benchmark_provenance(__file__, argv, teacher, profile=args.profile, students=args.students,
                                           threads=args.threads, device=device, seed=args.seed,
                                           load_average=os.getloadavg()),
    }
    atomic_write_json(args.out, result)
    for o in options:
        print(f"{o['architecture']:9s} {o['n_parameters']:6d} params: "
              f"force MAE {o['force_mae_vs_dft_ev_per_angstrom']:.4f}"
              f" eV/Å (teacher {teacher_force:.4f}, ratio {o['force_mae_ratio_student_to_teacher']:.2f}), "
              f"MD {o['md_speedup_over_teacher']['unit_cell']:.1f}x faster than the teacher")
    print(f"chosen: {chosen['architecture']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
