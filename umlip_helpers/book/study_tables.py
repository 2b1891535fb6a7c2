"""Which numbers stand for each study on the book's Results page (:data:`KEY_NUMBERS`) and the columns of its
record tables where the default reads badly (:data:`COLUMNS`): one entry per study, read by :mod:`.result_tables`."""

from __future__ import annotations

#: the numbers that stand for a result: first in its headline's summary, and on each variant's line.
#: A path is dotted keys; ``*`` takes every entry of a dict (labelled by its key) or list (by its name field); a pair
#: of paths is one number before and after (``0.0742 → 0.0293``).
KEY_NUMBERS: dict[str, list[str | tuple[str, str]]] = {
    "active_learning": ["summary.parent_calls_percent_of_bfgs", "summary.fraction_within_0p02_ev"],
    "active_learning_matched_prior": ["summary.parent_calls_percent_of_bfgs", "summary.fraction_within_0p02_ev"],
    "active_learning_prior": ["runs.*.summary.parent_calls_percent_of_bfgs"],
    "prior_curvature": ["summary.median_newton_contraction", "summary.spearman_contraction_vs_active_parent_calls"],
    "delta_elements": ["models.*.mean_delta_mev_per_atom"],
    "ni_properties": ["models.*.properties.C44.percent_error"],
    "foundation_errors": ["models.*.force_mae_ev_per_angstrom"],
    "finetune_ymno3": [("results.*.test_before.forces_mae_ev_per_angstrom",
                        "results.*.test_after.forces_mae_ev_per_angstrom")],
    "finetune_batching": ["rows.*.speedup"],
    "md_throughput": ["overhead.*.ratio_run_md_over_bare"],
    "periodic_vs_naive": ["force_mae_ratio_periodic_over_naive", "abs_energy_error_ratio_periodic_over_naive"],
    "distillation": ["headline.md_speedup_student_over_teacher", "headline.force_mae_ratio_student_to_teacher"],
    "phonon_finetune": ["models.*.mae_ratio_finetuned_over_base"],
    "finetune_scaling": ["runs.*.speedup_over_one_rank"],
    "finetune_forgetting": ["results.*.forgetting_force_rms_ev_per_angstrom",
                            "results.*.target.forces_mae_ev_per_angstrom"],
    "finetune_vs_native": [(f"headline.*.{k.format('native')}", f"headline.*.{k.format('umlip')}") for k in (
        "{}.forces_mae_ev_per_angstrom", "{}.stress_mae_gpa", "{}.forces_rmse_ev_per_angstrom",
        "seed_spread.{}.worst_seed_forces_mae_ev_per_angstrom")] + ["headline.*.wall_ratio_native_over_umlip"],
    "lammps_md": ["headline.*.lammps_over_ase_throughput", "headline.*.largest_ni_atoms_both_engines"],
}

#: the columns of a headline's record tables, where the default (every scalar field, at most MAX_COLUMNS) reads badly
COLUMNS: dict[str, dict[str, list[str]]] = {
    "active_learning": {"systems": ["system", "n_atoms", "baseline_parent_calls", "gpmin_parent_calls",
                                    "active_parent_calls", "parent_calls_percent", "energy_difference_ev",
                                    "active_converged", "wall_seconds"]},
    "active_learning_matched_prior": {"systems": ["system", "prior_error_base", "prior_error_matched",
                                                  "baseline_parent_calls", "gpmin_parent_calls",
                                                  "active_parent_calls", "sevennet0_learner_parent_calls",
                                                  "energy_difference_ev", "active_converged"]},
    "active_learning_prior": {"runs": ["lambda", "rules", "summary.n_systems", "summary.active_parent_calls",
                                       "summary.baseline_parent_calls", "summary.parent_calls_percent_of_bfgs",
                                       "summary.fraction_within_0p02_ev",
                                       "summary.median_prior_force_error_mean_ev_per_angstrom"]},
    "prior_curvature": {"systems": ["system", "baseline_parent_calls", "active_parent_calls",
                                    "relative_hessian_error", "newton_contraction"]},
    "delta_elements": {"models": ["mean_delta_mev_per_atom", "median_delta_mev_per_atom", "n_elements",
                                  "ni.a0_angstrom", "ni.b0_gpa", "ni.delta_mev_per_atom", "s_per_call",
                                  "speed_relative_to_first_model"]},
    "foundation_errors": {"models": ["model", "energy_mae_aligned_mev_per_atom", "force_mae_ev_per_angstrom",
                                     "force_rmse_ev_per_angstrom", "force_cosine_mean", "stress_mae_gpa",
                                     "seconds_per_frame", "time_ratio_to_sevennet_0"]},
    "finetune_ymno3": {"results": ["model", "strategy", "n_train", "n_test", "test_before.forces_mae_ev_per_angstrom",
                                   "test_after.forces_mae_ev_per_angstrom", "test_before.stress_mae_gpa",
                                   "test_after.stress_mae_gpa", "test_after.energy_mae_mev_per_atom",
                                   "seconds_per_epoch"],
                       "step_cost": ["model", "n_atoms", "inference_s", "train_forward_s", "train_backward_s",
                                     "train_step_over_inference"]},
    "finetune_batching": {"rows": ["frames", "batch_size", "per_frame_seconds_per_step", "batched_seconds_per_step",
                                   "speedup", "loss_max_relative_difference"]},
    "md_throughput": {"overhead": ["system", "n_atoms", "steps", "ratio_run_md_over_bare", "ratio_paired_cpu_median",
                                   "ratio_min_wall", "control_bare_over_bare_cpu"]},
    "periodic_vs_naive": {"runs": ["seed", "forces_mae_ev_per_angstrom.naive", "forces_mae_ev_per_angstrom.periodic",
                                   "force_mae_ratio_periodic_over_naive", "energy_error_mev_per_atom.naive",
                                   "energy_error_mev_per_atom.periodic", "pca_coverage_fraction.naive",
                                   "pca_coverage_fraction.periodic", "wall_seconds"]},
    "distillation": {"students": ["architecture", "n_parameters", "epochs_run", "force_mae_vs_dft_ev_per_angstrom",
                                  "force_mae_ratio_student_to_teacher", "md_ms_per_step.unit_cell",
                                  "md_speedup_over_teacher.unit_cell", "meets_targets.speed",
                                  "meets_targets.accuracy"]},
    "phonon_finetune": {"models": ["base_model", "frequency_mae_thz_base", "frequency_mae_thz_finetuned",
                                   "mae_ratio_finetuned_over_base", "mean_frequency_ratio_base",
                                   "mean_frequency_ratio_finetuned", "forces_mae_ev_per_angstrom_base",
                                   "forces_mae_ev_per_angstrom_finetuned", "finetune_seconds"]},
}
