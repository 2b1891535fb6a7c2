"""Atomic file writes and provenance records, including :class:`ModelInfo`, the provenance of a model."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from umlip_helpers.errors import UmlipError

PROVENANCE_PACKAGES = ("umlip-helpers", "numpy", "scipy", "ase", "torch", "sevenn", "chgnet", "mace-torch",
                       "fairchem-core", "upet", "metatrain", "nequip", "phonopy", "peft")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def to_jsonable(value: Any) -> Any:
    """Convert numpy arrays/scalars, paths and nested containers into JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _installed_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (read once per process: metadata lookups cost ~20 ms)."""
    return dict(_installed_versions(tuple(names)))


@functools.cache
def cpu_model() -> str:
    """The CPU's model name: numerical libraries pick their kernels by CPU, so the last bits of results can differ."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a calculator is, for provenance: every calculator the package returns carries one (:func:`model_info`).

    ``base_model`` is the manifest's record of the model a fine-tuned one started from; ``details`` holds what a
    family or parent adds (a DFT parent's cutoff, say).
    """

    name: str
    family: str | None = None
    version: str | None = None
    checkpoint: str | None = None
    sha256: str | None = None
    device: str | None = None
    base_model: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The flat record written into provenance (``details`` merged in; unset fields left out)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"}
        return {**{k: v for k, v in fields.items() if v is not None}, **self.details}

    def replace(self, **changes: Any) -> "ModelInfo":
        return dataclasses.replace(self, **changes)


_INFO_ATTRIBUTE = "_umlip_model_info"


def attach_model_info(calc: Any, info: ModelInfo) -> Any:
    """Record ``info`` on ``calc`` (read back with :func:`model_info`); returns ``calc``."""
    setattr(calc, _INFO_ATTRIBUTE, info)
    return calc


def model_info(calc: Any) -> ModelInfo:
    """The :class:`ModelInfo` of a calculator (or parent factory); one naming only its class for a calculator
    the package did not build."""
    info = getattr(calc, _INFO_ATTRIBUTE, None)
    if info is not None:
        return info
    return ModelInfo(name=getattr(calc, "__name__", type(calc).__name__))


def provenance(calc: Any = None, **parameters: Any) -> dict[str, Any]:
    """The record every result carries: model (name, version, checkpoint sha256), parameters, versions, time."""
    model = model_info(calc).to_dict() if calc is not None else {}
    return {
        "model": model,
        "parameters": to_jsonable(parameters),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu": cpu_model(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def benchmark_provenance(script_file: str | os.PathLike, argv: list[str] | None, calc: Any = None,
                         **parameters: Any) -> dict[str, Any]:
    """:func:`provenance` of a ``benchmarks/`` script's result, plus ``script`` ("benchmarks/NAME.py", by which the
    book's Results page files the result under its study) and ``argv``, the command line that made it
    (``["python", "benchmarks/NAME.py", *argv]``; ``argv`` None reads ``sys.argv[1:]``). Both sit beside
    ``parameters``, not in it, so that resuming a run (:func:`rows_to_resume`) compares settings, not flags."""
    import sys

    script = f"benchmarks/{Path(script_file).name}"
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return {**provenance(calc, **parameters), "script": script, "argv": ["python", script, *args]}


def rows_to_resume(path: str | os.PathLike, record: dict[str, Any], key: str = "system") -> dict[str, dict]:
    """The rows (by ``key``) that an interrupted run wrote to ``path``; {} if there is no such file.

    ``record`` is this run's :func:`provenance`. An earlier file with another model or other parameters, or one
    that is not JSON, raises an UmlipError naming the file (and the fields that differ, with both values:
    :func:`check_same_settings`), so that rows of two settings are never mixed.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UmlipError(f"{path}: cannot resume, it is not JSON ({error}); move it away to start afresh") from None

    def settings(record: dict[str, Any]) -> dict[str, Any]:  # {"model.name": ..., "parameters.fmax": ...}
        return {f"{field}.{name}": value for field in ("model", "parameters")
                for name, value in record.get(field, {}).items()}

    check_same_settings(path, settings(earlier.get("provenance", {})), settings(to_jsonable(record)),
                        "move the file away to start afresh")
    return {row[key]: row for row in earlier.get("systems", [])}


def check_same_settings(path: str | os.PathLike, saved: dict[str, Any], current: dict[str, Any],
                        remedy: str) -> None:
    """Refuse to continue the run saved at ``path`` with other settings: an UmlipError naming each field of
    ``saved`` and ``current`` that differs, with both values, and ``remedy``. A resume never mixes two runs."""
    saved, current = to_jsonable(saved), to_jsonable(current)
    differ = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if differ:
        raise UmlipError(f"{path} belongs to another run: {', '.join(differ)} differ (saved "
                         + "; ".join(f"{k}={saved.get(k)!r}" for k in differ) + ", this run "
                         + "; ".join(f"{k}={current.get(k)!r}" for k in differ) + f"); {remedy}")


def save_notebook_results(path: str | os.PathLike | None, summary: dict[str, Any]) -> dict[str, Any]:
    """A notebook's last cell: write its headline numbers (and provenance) to ``path`` when one is given.

    Every notebook declares ``results_json = None`` in its parameters cell; ``umlip sweep`` sets it per run
    and gathers the files into one table.
    """
    summary = to_jsonable(summary)
    if path:
        atomic_write_json(path, summary)
    return summary
