"""Executing the notebooks and building the HTML book, for two profiles.

* ``ci``: every notebook in ``_toc.yml`` is executed with papermill at its default parameters (``profile = "ci"``)
  and stored in the book's jupyter-cache (``_build/.jupyter_cache``); then ``jupyter-book build`` finds every
  notebook in that cache and only renders. Notebooks already cached are not executed again, and the notebook
  tests use the same cache, so ``make test`` followed by ``make book`` executes each notebook once. The cache is
  cleared when ``umlip_helpers/`` or ``data/`` change, since those change what the notebooks compute.
* ``full``: papermill injects ``profile = "full"`` into copies under ``_build/full/src``; a copy is re-executed only
  when its notebook (or the package, or the data) changed. The copies are built with execution off into
  ``_build/full/_build/html``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import UmlipError
from ..io import atomic_write_json, atomic_write_text
from .toc import toc_notebooks, toc_problems

Profile = Literal["ci", "full"]
CACHE_DIR = Path("_build") / ".jupyter_cache"
FINGERPRINT_FILE = "umlip_fingerprint.json"


class NotebookExecutionError(UmlipError, RuntimeError):
    """A notebook cell raised; the message names the notebook, the cell and the error."""


def kernel_environment() -> None:
    """Environment the notebook kernels inherit: inline figures (the Makefile exports MPLBACKEND=Agg, which would
    hide them), static structure views (no widget state to embed), one thread, offline Hugging Face."""
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["UMLIP_STATIC_VIEWS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def fingerprint(root: Path) -> str:
    """sha256 over the package source and the shipped data: what notebooks depend on besides their own code."""
    digest = hashlib.sha256()
    files = sorted((root / "umlip_helpers").rglob("*.py"))
    files += sorted(p for p in (root / "data").rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def open_cache(root: Path):
    """The book's jupyter-cache, emptied first if the package or the data changed since it was filled."""
    from jupyter_cache import get_cache

    cache = get_cache(str(root / CACHE_DIR))
    stamp = root / CACHE_DIR / FINGERPRINT_FILE
    current = fingerprint(root)
    previous = json.loads(stamp.read_text()).get("sha256") if stamp.is_file() else None
    if previous != current:
        if previous is not None:
            cache.clear_cache()
        atomic_write_json(stamp, {"sha256": current})
    return cache


def _execution_error(path: Path, exc: Exception) -> NotebookExecutionError:
    cell = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return NotebookExecutionError(f"{path.name}: {where} raised {ename}: {evalue}")


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def static_outputs(outputs: list) -> list:
    """Outputs without ipywidgets views (tqdm bars, nglview): they need a live kernel, the HTML cannot show them."""
    return [o for o in outputs if WIDGET_MIME not in o.get("data", {})]


@dataclass
class Execution:
    notebook: Path
    status: Literal["executed", "cached"]
    seconds: float
    outputs: Any = field(repr=False, default=None)


def execute_notebook(path: str | Path, root: str | Path = ".", timeout: int = 900, force: bool = False) -> Execution:
    """Execute one notebook at its default parameters (``profile = "ci"``) with papermill, and store it in the
    book's jupyter-cache (unless an identical notebook is cached already and ``force`` is False).

    Raises NotebookExecutionError naming the cell when a cell fails.
    """
    import nbformat
    import papermill
    from jupyter_cache.base import CacheBundleIn

    path, root = Path(path).resolve(), Path(root).resolve()
    kernel_environment()
    cache = open_cache(root)
    source = nbformat.read(path, as_version=4)
    if not force:
        try:
            record = cache.match_cache_notebook(source)
        except KeyError:
            record = None
        if record is not None:
            _, merged = cache.merge_match_into_notebook(source)
            return Execution(path, "cached", float(record.data.get("execution_seconds") or 0.0), merged)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        try:
            papermill.execute_notebook(str(path), str(out), kernel_name="python3", cwd=str(path.parent),
                                       progress_bar=False, execution_timeout=timeout, log_output=False)
        except papermill.PapermillExecutionError as exc:
            raise _execution_error(path, exc) from exc
        executed = nbformat.read(out, as_version=4)
    seconds = time.perf_counter() - start
    # Cache the source notebook (its metadata is what jupyter-book hashes) with papermill's outputs.
    merged = copy.deepcopy(source)
    if len(merged.cells) != len(executed.cells):
        raise NotebookExecutionError(f"{path.name}: papermill returned {len(executed.cells)} cells, "
                                     f"the notebook has {len(merged.cells)}")
    for cell, done in zip(merged.cells, executed.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = static_outputs(done.outputs), done.execution_count
    cache.cache_notebook_bundle(CacheBundleIn(merged, str(path), data={"execution_seconds": seconds}),
                                check_validity=False, overwrite=True)
    return Execution(path, "executed", seconds, merged)


def execute_all_ci(root: Path, timeout: int) -> list[Execution]:
    """Execute (or find in the cache) every notebook of the toc; raise listing every failed notebook."""
    from tqdm.auto import tqdm

    done, failures = [], []
    notebooks = toc_notebooks(root)
    with tqdm(notebooks, desc="notebooks (ci)", unit="nb") as bar:
        for path in bar:
            bar.set_postfix_str(path.name)
            try:
                done.append(execute_notebook(path, root, timeout=timeout))
            except NotebookExecutionError as exc:
                failures.append(str(exc))
    for item in done:
        print(f"  {item.notebook.name}: {item.status} ({item.seconds:.0f} s)", file=sys.stderr)
    if failures:
        raise NotebookExecutionError("notebook execution failed:\n  " + "\n  ".join(failures))
    return done


def execute_all_full(root: Path, stage: Path, timeout: int) -> None:
    """papermill ``profile = "full"`` into copies under ``stage/notebooks``; unchanged copies are kept."""
    import nbformat
    import papermill
    from tqdm.auto import tqdm

    kernel_environment()
    package = fingerprint(root)
    failures = []
    for path in tqdm(toc_notebooks(root), desc="notebooks (full)", unit="nb"):
        out = stage / "notebooks" / path.name
        key = {"notebook_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "package": package,
               "parameters": {"profile": "full"}}
        if out.is_file() and nbformat.read(out, as_version=4).metadata.get("umlip_book") == key:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".running.ipynb")
        try:
            papermill.execute_notebook(str(path), str(tmp), parameters={"profile": "full"}, kernel_name="python3",
                                       cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
        except papermill.PapermillExecutionError as exc:
            failures.append(str(_execution_error(path, exc)))
            continue
        executed = nbformat.read(tmp, as_version=4)
        executed.metadata.pop("widgets", None)
        for cell in executed.cells:
            if cell.cell_type == "code":
                cell.outputs = static_outputs(cell.outputs)
        executed.metadata["umlip_book"] = key
        atomic_write_text(out, nbformat.writes(executed))
        tmp.unlink()
    if failures:
        raise NotebookExecutionError("notebook execution failed (profile full):\n  " + "\n  ".join(failures))


LAUNCH_ENV = {"UMLIP_REPOSITORY_URL": ("repository", "url"),
              "UMLIP_JUPYTERHUB_URL": ("launch_buttons", "jupyterhub_url"),
              "UMLIP_BINDERHUB_URL": ("launch_buttons", "binderhub_url")}


def effective_config(root: Path, execute: str | None = None) -> dict:
    """``_config.yml`` with the launch URLs from the environment and, optionally, another execution mode."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    for variable, (section, key) in LAUNCH_ENV.items():
        if os.environ.get(variable):
            config.setdefault(section, {})[key] = os.environ[variable]
    if execute is not None:
        config["execute"]["execute_notebooks"] = execute
    sphinx = config.get("sphinx", {}).get("config", {})
    if "html_static_path" in sphinx:  # absolute, so that a build from a staged copy still finds the MathJax copy
        sphinx["html_static_path"] = [str(root / path) for path in sphinx["html_static_path"]]
    return config


def _jupyter_book(source: Path, output: Path, config: dict) -> None:
    import yaml

    config_path = output / "_build" / "_config.effective.yml"
    atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(source),
               "--path-output", str(output), "--config", str(config_path)]
    print("$ " + " ".join(command), file=sys.stderr)
    completed = subprocess.run(command, cwd=source)
    if completed.returncode != 0 or not (output / "_build" / "html" / "index.html").is_file():
        raise UmlipError(f"jupyter-book build failed (exit {completed.returncode}); see the log above")


def build(profile: Profile = "ci", root: str | Path = ".", timeout: int = 900) -> Path:
    """Execute the notebooks for ``profile`` and build the HTML book; return the folder holding index.html."""
    root = Path(root).resolve()
    if not (root / "_config.yml").is_file():
        raise UmlipError(f"{root} has no _config.yml; run from the umlip-book checkout or pass --root")
    problems = toc_problems(root)
    if problems:
        raise UmlipError("_toc.yml is out of date (run `python -m umlip_helpers.book --update-toc`):\n  "
                         + "\n  ".join(problems))
    kernel_environment()
    start = time.perf_counter()
    if profile == "ci":
        execute_all_ci(root, timeout)
        # jupyter-book's cache path is relative to the source folder; keep it pointing at the shared cache.
        config = effective_config(root)
        config["execute"]["cache"] = str(root / CACHE_DIR)
        _jupyter_book(root, root, config)
        html = root / "_build" / "html"
    elif profile == "full":
        stage = root / "_build" / "full" / "src"
        stage.mkdir(parents=True, exist_ok=True)
        for name in ("_toc.yml", "references.bib"):
            shutil.copy2(root / name, stage / name)
        shutil.copytree(root / "book", stage / "book", dirs_exist_ok=True)
        for link in ("benchmarks", "data"):  # the results page and relative paths read these
            if not (stage / link).exists():
                (stage / link).symlink_to(root / link)
        execute_all_full(root, stage, timeout)
        _jupyter_book(stage, stage.parent, effective_config(root, execute="off"))
        html = stage.parent / "_build" / "html"
    else:
        raise ValueError(f"profile must be 'ci' or 'full', not {profile!r}")
    print(f"book ({profile}) built in {time.perf_counter() - start:.0f} s: {html / 'index.html'}", file=sys.stderr)
    return html
