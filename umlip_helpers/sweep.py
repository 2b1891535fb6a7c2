"""Run one notebook over a parameter grid with papermill on a Dask cluster: ``umlip sweep``.

Every run gets a folder ``OUT/runs/<name>/`` with ``output.ipynb``, ``results.json`` (the notebook's summary, from
``save_notebook_results(results_json, ...)``) and ``status.json``. The table of all runs goes to ``OUT/sweep.csv``
with a plot ``OUT/sweep.png``. Finished runs are left alone when the sweep is run again; a run whose cell raises
is marked failed with the error and the other runs go on. Parameters are checked against the notebook's
``parameters`` cell before anything executes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .choices import Scheduler
from .errors import UmlipError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Parameters the sweep sets itself.
RESERVED = ("results_json",)
SLURM_ENV = {
    "queue": "UMLIP_SLURM_QUEUE", "account": "UMLIP_SLURM_ACCOUNT", "walltime": "UMLIP_SLURM_WALLTIME",
    "cores": "UMLIP_SLURM_CORES", "memory": "UMLIP_SLURM_MEMORY", "gpus": "UMLIP_SLURM_GPUS",
    "prologue": "UMLIP_SLURM_PROLOGUE",
}


class SweepError(UmlipError, ValueError):
    """A sweep that cannot start: bad notebook, unknown parameter, value of the wrong type."""


# ----------------------------------------------------------------------------------------------------- the grid
def split_values(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; commas inside brackets or quotes do not split (``'["a","b"],["c"]'`` is two
    values)."""
    values, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    return values + [text[start:].strip()]


def parse_params(specs: list[str]) -> dict[str, list[str]]:
    """``["model=a,b", "profile=ci"]`` -> ``{"model": ["a", "b"], "profile": ["ci"]}``. A list-valued parameter takes
    one list per run (``models=["a","b"],["c"]``), or one name per run (``models=a,c`` runs ``["a"]`` and
    ``["c"]``)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values:
            raise SweepError(f"--param {spec!r}: expected NAME=VALUE[,VALUE...]")
        if name in grid:
            raise SweepError(f"--param {name} is given twice; list all its values in one --param")
        grid[name] = split_values(values)
    return grid


def declared_type(info: dict[str, Any]) -> str:
    """The type of a notebook parameter: its annotation if any, else the type of its literal default."""
    if info.get("inferred_type_name") not in (None, "None"):
        return info["inferred_type_name"]
    try:
        value = ast.literal_eval(info["default"])
    except (ValueError, SyntaxError):
        return "expression"
    return "None" if value is None else type(value).__name__


def _convert(name: str, text: str, declared_type: str, default: str) -> Any:
    if declared_type == "int":
        try:
            return int(text)
        except ValueError:
            raise SweepError(f"parameter {name}: {text!r} is not an int (the notebook declares {name} = {default})")
    if declared_type == "float":
        try:
            return float(text)
        except ValueError:
            raise SweepError(f"parameter {name}: {text!r} is not a float (the notebook declares {name} = {default})")
    if declared_type == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise SweepError(f"parameter {name}: {text!r} is not a bool (true/false; the notebook declares "
                             f"{name} = {default})")
        return text.lower() in ("true", "1")
    if declared_type in ("str", "None"):
        return None if declared_type == "None" and text == "None" else text
    if declared_type in ("list", "dict"):
        return _literal(name, text, declared_type, default)
    raise SweepError(f"parameter {name}: the notebook declares it as {declared_type} ({name} = {default}); a sweep "
                     "can only set str, int, float, bool, list and dict parameters")


def _literal(name: str, text: str, declared_type: str, default: str) -> Any:
    """A list or dict parameter: a Python/JSON literal, or (for a list) a bare value, which becomes a list of one."""
    if declared_type == "list" and not text.startswith(("[", "{", "(")):
        return [text]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SweepError(f"parameter {name}: {text!r} is not a {declared_type} literal (the notebook declares "
                         f"{name} = {default})") from None
    if type(value).__name__ != declared_type:
        raise SweepError(f"parameter {name}: {text!r} is a {type(value).__name__}, the notebook declares a "
                         f"{declared_type} ({name} = {default})")
    return value


def expand_grid(notebook: str | Path, grid: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``, with values converted to the types the notebook's ``parameters`` cell
    declares. Raises SweepError naming the parameter before any run starts."""
    import papermill

    notebook = Path(notebook)
    if not notebook.is_file():
        raise SweepError(f"notebook {notebook} does not exist")
    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise SweepError(f"{notebook}: no cell tagged 'parameters', so it cannot be swept")
    for name in grid:
        if name in RESERVED:
            raise SweepError(f"parameter {name} is set by the sweep itself (one per run); do not pass it")
        if name not in declared:
            raise SweepError(f"{notebook.name} does not declare a parameter {name!r}; its parameters are: "
                             + ", ".join(n for n in declared if n not in RESERVED))
    if "results_json" not in declared:
        raise SweepError(f"{notebook.name}: its parameters cell must declare results_json = None (the sweep "
                         "collects each run's summary through it)")
    typed = {name: [_convert(name, v, declared_type(declared[name]), declared[name]["default"])
                    for v in values] for name, values in grid.items()}
    names = list(typed)
    return [dict(zip(names, combo)) for combo in itertools.product(*(typed[n] for n in names))]


def run_name(params: dict[str, Any]) -> str:
    """A folder name for one run: ``model=emt__element=Cu`` (shortened with a hash when long or unsafe)."""
    text = "__".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", text)
    if len(safe) > 80 or safe != text:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
        safe = f"{safe[:60]}__{digest}"
    return safe


# ------------------------------------------------------------------------------------------------------ one run
def execute_run(notebook: str, run_dir: str, params: dict[str, Any], timeout: int | None = None) -> dict[str, Any]:
    """Execute one run (on a Dask worker); never raises for a failing cell, returns the run's status record."""
    import papermill

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.json"
    results.unlink(missing_ok=True)
    os.environ.setdefault("UMLIP_STATIC_VIEWS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    status: dict[str, Any] = {"params": params, "notebook": notebook, "started": time.time()}
    try:
        papermill.execute_notebook(notebook, str(run_dir / "output.ipynb"),
                                   parameters={**params, "results_json": str(results.resolve())},
                                   kernel_name="python3", cwd=str(Path(notebook).parent), progress_bar=False,
                                   execution_timeout=timeout)
    except papermill.PapermillExecutionError as exc:
        status.update(status="failed", error=f"cell [{exc.exec_count}] raised {exc.ename}: {exc.evalue}")
    except Exception as exc:  # kernel death, timeout: still one failed run, not a failed sweep
        status.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    else:
        if results.is_file():
            status["status"] = "done"
        else:
            status.update(status="failed", error="the notebook finished without writing results_json "
                                                  "(its last cell should call save_notebook_results)")
    status["seconds"] = round(time.time() - status["started"], 2)
    atomic_write_json(run_dir / "status.json", status)
    return status


def _finished(run_dir: Path, params: dict[str, Any]) -> bool:
    status_file = run_dir / "status.json"
    if not (status_file.is_file() and (run_dir / "results.json").is_file()):
        return False
    status = json.loads(status_file.read_text())
    return status.get("status") == "done" and status.get("params") == json.loads(json.dumps(params))


# ------------------------------------------------------------------------------------------------------ clusters
def slurm_cluster(workers: int):
    """A dask-jobqueue SLURMCluster configured from ``UMLIP_SLURM_*`` (see the book's GPU and HPC page)."""
    from dask_jobqueue import SLURMCluster

    env = {key: os.environ.get(var) for key, var in SLURM_ENV.items()}
    directives = [f"--gres=gpu:{env['gpus']}"] if env["gpus"] else []
    options: dict[str, Any] = {
        "cores": int(env["cores"] or 4), "processes": 1, "memory": env["memory"] or "16GB",
        "walltime": env["walltime"] or "02:00:00", "job_extra_directives": directives,
        "job_script_prologue": [line.strip() for line in (env["prologue"] or "").split(";") if line.strip()],
    }
    if env["queue"]:
        options["queue"] = env["queue"]
    if env["account"]:
        options["account"] = env["account"]
    cluster = SLURMCluster(**options)
    cluster.scale(jobs=workers)
    return cluster


def make_cluster(scheduler: Scheduler, workers: int):
    if scheduler == "local":
        from dask.distributed import LocalCluster

        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    if scheduler == "slurm":
        return slurm_cluster(workers)
    raise SweepError(f"scheduler must be 'local' or 'slurm', not {scheduler!r}")


# ------------------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    table_csv: Path
    plot_png: Path | None
    runs: list[dict[str, Any]]
    executed: int
    skipped: int

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] != "done"]


def _table(runs: list[dict[str, Any]], out: Path):
    import pandas as pd

    rows = []
    for run in runs:
        row = {"run": run["name"], **{f"param.{k}": v for k, v in run["params"].items()}, "status": run["status"],
               "error": run.get("error", ""), "seconds": run.get("seconds")}
        results = Path(run["dir"]) / "results.json"
        if run["status"] == "done" and results.is_file():
            summary = json.loads(results.read_text())
            row.update({k: v for k, v in summary.items()
                        if k != "provenance" and (isinstance(v, (int, float, str, bool)) or v is None)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    csv = out / "sweep.csv"
    atomic_write_text(csv, frame.to_csv(index=False))
    return frame, csv


def _plot(frame, out: Path) -> Path | None:
    from matplotlib.figure import Figure

    done = frame[frame["status"] == "done"]
    skip = {"seconds"} | {c for c in frame.columns if c.startswith("param.")}
    numeric = [c for c in done.columns if c not in skip and done[c].dtype.kind in "if" and done[c].notna().any()]
    if done.empty or not numeric:
        return None
    fig = Figure(figsize=(max(4.0, 1.2 * len(done) + 2), 2.6 * len(numeric)))
    axes = fig.subplots(len(numeric), 1, squeeze=False)[:, 0]
    for ax, column in zip(axes, numeric):
        ax.bar(range(len(done)), done[column], color="tab:blue")
        ax.set_ylabel(column, fontsize=8)
        ax.set_xticks(range(len(done)), done["run"], rotation=20, ha="right", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(out / "sweep.png", buffer.getvalue())


def run_sweep(notebook: str | Path, grid: dict[str, list[str]], out: str | Path = "runs/sweep",
              scheduler: Scheduler = "local", workers: int | None = None, timeout: int | None = None,
              progress: bool = True) -> SweepResult:
    """Run ``notebook`` for every combination in ``grid`` (values as strings, converted to the declared types).

    Returns the table (CSV and plot paths) and every run's status. Raises SweepError before execution for an
    undeclared parameter or a value of the wrong type.
    """
    from dask.distributed import Client, as_completed
    from tqdm.auto import tqdm

    notebook = Path(notebook).resolve()
    combos = expand_grid(notebook, grid)
    out = Path(out).resolve()
    runs = [{"name": run_name(p), "params": p, "dir": str(out / "runs" / run_name(p))} for p in combos]
    todo = [r for r in runs if not _finished(Path(r["dir"]), r["params"])]
    for run in runs:
        if run not in todo:
            run.update(json.loads((Path(run["dir"]) / "status.json").read_text()), name=run["name"], dir=run["dir"])
    if todo:
        n_workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
        with make_cluster(scheduler, n_workers) as cluster, Client(cluster) as client:
            futures = {client.submit(execute_run, str(notebook), r["dir"], r["params"], timeout, pure=False): r
                       for r in todo}
            with tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {notebook.name}",
                      unit="run", disable=not progress) as bar:
                for future in as_completed(futures):
                    run = futures[future]
                    run.update(future.result(), name=run["name"], dir=run["dir"])
                    bar.set_postfix_str(f"{run['name']}: {run['status']}")
                    bar.update()
    frame, csv = _table(runs, out)
    png = _plot(frame, out)
    return SweepResult(csv, png, runs, executed=len(todo), skipped=len(runs) - len(todo))


def cli_sweep(args) -> dict[str, Any]:
    """``umlip sweep NOTEBOOK --param k=v1,v2 ... [--scheduler local|slurm] [--out DIR] [--workers N]``."""
    result = run_sweep(args.notebook, parse_params(args.param), out=args.out, scheduler=args.scheduler,
                       workers=args.workers)
    print(f"{len(result.runs)} runs ({result.executed} executed, {result.skipped} already finished, "
          f"{len(result.failed)} failed); table: {result.table_csv}"
          + (f"; plot: {result.plot_png}" if result.plot_png else ""))
    for run in result.failed:
        print(f"  failed {run['name']}: {run.get('error', '')}")
    return {"table_csv": result.table_csv, "plot_png": result.plot_png, "runs": result.runs,
            "executed": result.executed, "skipped": result.skipped, "failed": len(result.failed)}
