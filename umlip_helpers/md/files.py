"""The files of a run in ``out_dir`` (see :mod:`umlip_helpers.md`): the CSV log's rows, read back up to a step
with a torn row dropped, and the trajectory's last complete frame."""

from __future__ import annotations

import warnings
from pathlib import Path

from ase import Atoms

TRAJECTORY_NAME = "md.traj"
LOG_NAME = "md_log.csv"
RUN_NAME = "md_run.json"
UNSTABLE_NAME = "unstable_frame.extxyz"
LOG_COLUMNS = ("step", "time_ps", "epot_ev", "ekin_ev", "etot_ev", "conserved_ev", "temperature_k", "pressure_gpa",
               "volume_angstrom3")


def read_log(path: Path, up_to_step: int) -> list[list[float]]:
    """Complete rows of a log with step <= ``up_to_step`` (a row torn by a kill is dropped)."""
    if not path.is_file():
        return []
    rows = []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    for line in lines[1:]:
        fields = line.rstrip("\n").split(",")
        if not line.endswith("\n") or len(fields) != len(LOG_COLUMNS):
            break
        try:
            row = [float(x) for x in fields]
        except ValueError:
            break
        if row[0] > up_to_step:
            break
        rows.append(row)
    return rows


def log_line(row: list[float]) -> str:
    return ",".join(repr(float(x)) if i else str(int(x)) for i, x in enumerate(row)) + "\n"


def read_last_frame(path: Path) -> Atoms | None:
    from ase.io.trajectory import Trajectory
    from ase.io.ulm import InvalidULMFileError

    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with Trajectory(str(path)) as traj:
            return traj[-1] if len(traj) else None
    except InvalidULMFileError:
        # the header is written with the first frame, so a torn header means no frame was complete
        torn = path.with_name(path.name + ".torn")
        path.replace(torn)
        warnings.warn(f"{path}: no complete frame (killed during the first write); moved it to {torn}, starting afresh")
        return None
