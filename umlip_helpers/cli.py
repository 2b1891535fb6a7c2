"""The ``umlip`` command line: every workflow of umlip_helpers as a command. Argument names are fixed here (batch
jobs depend on them); each command is carried out by a function in the module that owns the workflow, imported only
when it runs. Every command also takes ``--config FILE.yml``, whose keys are the long option names (flags given on
the command line win), and writes the settings it ran with next to its results."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .choices import (Correction, Device, Ensemble, ExportFormat, FirstParentCall, LossFunction, LrSchedule, Optimizer,
                      ParentName, Precision, Query, Scheduler, Strategy, StudentArchitecture, options)
from .errors import UmlipError

#: command -> "module:function"; each function takes the parsed Namespace and returns a JSON-able dict
HANDLERS = {
    "models": "umlip_helpers.models.table:cli_models",
    "evaluate": "umlip_helpers.metrics:cli_evaluate",
    "eos": "umlip_helpers.properties.eos:cli_eos",
    "relax": "umlip_helpers.properties.relax:cli_relax",
    "elastic": "umlip_helpers.properties.elastic:cli_elastic",
    "phonons": "umlip_helpers.properties.phonons:cli_phonons",
    "finetune": "umlip_helpers.finetune:cli_finetune",
    "export": "umlip_helpers.export:cli_export",
    "md": "umlip_helpers.md:cli_md",
    "relax-active": "umlip_helpers.active:cli_relax_active",
    "distill": "umlip_helpers.distill:cli_distill",
    "sweep": "umlip_helpers.sweep:cli_sweep",
}
#: the file each command writes its resolved settings to, in its --out directory or beside its --json file
CONFIG_NAME = "umlip_config.yml"


class ConfigError(UmlipError):
    """A --config file that is missing, not YAML, or has an unknown key or a value of the wrong type."""


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="sevennet-0",
                   help="registered name, checkpoint file or fine-tuned output directory (default: sevennet-0)")
    p.add_argument("--device", default="auto", help=f"{', '.join(options(Device))} (or cuda:N); auto: CUDA if present")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is often fastest on 2 cores)")


def _structure_arg(p: argparse.ArgumentParser) -> None:
    """--structure of the property commands: an element symbol (its bulk crystal) or a structure file."""
    p.add_argument("--structure", default="Ni",
                   help="element symbol (its bulk crystal) or structure file (extxyz, POSCAR, CIF, ...); default Ni")


def _structure_file_arg(p: argparse.ArgumentParser) -> None:
    """--structure of md, relax-active and distill: a structure file, required."""
    p.add_argument("--structure", required=True, metavar="FILE",
                   help="structure file (extxyz, POSCAR, CIF, ...; its last frame)")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="OUT", help="write the result (with provenance) to OUT")


def _property_commands(sub) -> None:
    p = sub.add_parser("eos", help="Birch-Murnaghan equation of state")
    _model_arg(p)
    _structure_arg(p)
    _json_arg(p)

    p = sub.add_parser("relax", help="relax positions (and the cell) to a force threshold")
    _model_arg(p)
    _structure_arg(p)
    _json_arg(p)
    p.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--optimizer", choices=options(Optimizer), default="FIRE")
    p.add_argument("--fixed-cell", action="store_true", help="relax positions only")
    p.add_argument("--out", default=None, metavar="FILE", help="write the relaxed structure (extxyz)")

    p = sub.add_parser("elastic", help="elastic constants from strain-stress fits")
    _model_arg(p)
    _structure_arg(p)
    _json_arg(p)
    p.add_argument("--relax-ions", action="store_true", help="relax positions at each strain")

    p = sub.add_parser("phonons", help="phonon bands, DOS and thermal properties (phonopy)")
    _model_arg(p)
    _structure_arg(p)
    _json_arg(p)
    p.add_argument("--supercell", type=int, default=3)
    p.add_argument("--mesh", type=int, default=20)
    p.add_argument("--plot", default=None, metavar="PNG", help="write the band structure and DOS")


def _finetune_command(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model on DFT frames (add --nproc N for N processes)")
    _model_arg(p)
    _json_arg(p)
    p.add_argument("--train", required=True, help="vasprun.xml, OUTCAR or extxyz with energies and forces")
    p.add_argument("--val", default=None)
    p.add_argument("--strategy", choices=options(Strategy), default="lora")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4, help="frames per optimiser step, over all processes")
    p.add_argument("--lr", type=float, default=None, help="default: the strategy's (lora 1e-2, head 1e-3, full 4e-3)")
    p.add_argument("--lora-rank", type=int, default=None, help="default: the family's")
    p.add_argument("--lora-alpha", type=float, default=None, help="default: the rank")
    p.add_argument("--energy-weight", type=float, default=None, help="loss weight per (meV/atom)^2 (default 0.01)")
    p.add_argument("--force-weight", type=float, default=None, help="loss weight per (eV/Å)^2 (default 1)")
    p.add_argument("--stress-weight", type=float, default=None, help="loss weight per GPa^2 (default 0.01; full: 0.1)")
    p.add_argument("--loss", choices=options(LossFunction), default=None,
                   help="squared error (mse) or Huber per term (default: mse; full: huber)")
    p.add_argument("--huber-delta", type=float, default=None,
                   help="Huber's delta in eV/Å for forces, x10 in meV/atom and GPa (default 0.01)")
    p.add_argument("--schedule", choices=options(LrSchedule), default="cosine",
                   help="learning rate after a linear warm-up: cosine decay to 5%% (default) or constant")
    p.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay-weight", type=float, default=None,
                   help="weight of base-labelled replay frames beside the DFT frames in each step (default 0: off)")
    p.add_argument("--precision", choices=options(Precision), default="fp32",
                   help="bf16: the forward under bf16 autocast (for GPUs; weights and loss stay fp32)")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) to train on, started with torchrun")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")


def _dynamics_commands(sub) -> None:
    p = sub.add_parser("md", help="molecular dynamics with progress, restart and an explosion guard")
    _model_arg(p)
    _structure_file_arg(p)
    _json_arg(p)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--ensemble", choices=options(Ensemble), default="nvt")
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--out", default=None, metavar="DIR", help="trajectory and log directory")
    p.add_argument("--resume", action="store_true")

    p = sub.add_parser("relax-active", help="online active-learning relaxation with a parent calculator")
    _model_arg(p)
    _structure_file_arg(p)
    _json_arg(p)
    p.add_argument("--parent", choices=options(ParentName), default="emt")
    p.add_argument("--fmax", type=float, default=0.03)
    p.add_argument("--query", choices=options(Query), default="k_steps")
    p.add_argument("--k", type=int, default=10, help="surrogate steps between parent calls")
    p.add_argument("--correction", choices=options(Correction), default="gp")
    p.add_argument("--first-parent-call", choices=options(FirstParentCall), default="start",
                   help="call the parent first at the start structure, or at the prior's own minimum")
    p.add_argument("--max-parent-calls", type=int, default=100)

    p = sub.add_parser("distill", help="distil a (fine-tuned) teacher into a small, fast student")
    _model_arg(p)
    _structure_file_arg(p)
    _json_arg(p)
    p.add_argument("--architecture", choices=options(StudentArchitecture), default="mace")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--md-steps", type=int, default=20, help="teacher MD steps per temperature for configurations")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umlip", description="Benchmark and fine-tune universal ML interatomic potentials against DFT. Every "
        "command takes --config FILE.yml (keys: the long option names; flags on the command line win) and writes "
        f"the settings it ran with next to its results ({CONFIG_NAME} in --out DIR, or OUT.config.yml beside "
        "--json OUT). `umlip COMMAND --help` for each command.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT", help="print JSON (or write to OUT)")

    p = sub.add_parser("evaluate", help="errors of a model against labelled DFT frames")
    _model_arg(p)
    _json_arg(p)
    p.add_argument("--data", required=True, help="vasprun.xml, OUTCAR or extxyz (plain or .gz)")
    p.add_argument("--max-frames", type=int, default=None, help="first N frames in file order")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a parity plot")

    _property_commands(sub)
    _finetune_command(sub)
    p = sub.add_parser("export", help="write a (fine-tuned) model for LAMMPS")
    _model_arg(p)
    p.add_argument("--format", choices=options(ExportFormat), default="lammps")
    p.add_argument("--elements", default=None, help="LAMMPS type order, e.g. Ni,Al (default: --structure's)")
    p.add_argument("--structure", default=None, help="a structure whose elements set the type order")
    p.add_argument("--out", required=True, metavar="DIR")
    _dynamics_commands(sub)

    p = sub.add_parser("sweep", help="run a notebook over a parameter grid with papermill on Dask")
    p.add_argument("notebook")
    p.add_argument("--param", action="append", default=[], metavar="K=V1,V2", help="repeat for each parameter")
    p.add_argument("--scheduler", choices=options(Scheduler), default="local")
    p.add_argument("--out", default="runs/sweep", metavar="DIR")
    p.add_argument("--workers", type=int, default=None)

    for command in sub.choices.values():
        command.add_argument("--config", default=None, metavar="FILE.yml",
                             help="settings as YAML, keyed by the long option names; flags given here win")
    return parser


# ----------------------------------------------------------------------------------------------------- config files
def _options(command: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The command's options by long name ("batch-size"), without --help and --config."""
    found = {}
    for action in command._actions:
        long = [o[2:] for o in action.option_strings if o.startswith("--")]
        if long and long[0] not in ("help", "config"):
            found[long[0]] = action
    return found


def _checked(path: Path, key: str, value: Any, action: argparse.Action) -> Any:
    """``value`` as the option takes it, or a ConfigError naming the file and key."""
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{path}: key {key!r}: {value!r} is not {expected}")

    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise wrong("a list")
        return [str(item) for item in value]
    if action.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise wrong("an integer")
    if action.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
    if action.type is None:
        if isinstance(value, list) and key == "elements":
            value = ",".join(map(str, value))
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise wrong("a string")
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise wrong(f"one of {', '.join(map(str, action.choices))}")
    return value


def read_config(path: str | Path, command: argparse.ArgumentParser) -> dict[str, Any]:
    """The option values (by dest) a config file gives ``command``; every key and value checked."""
    path = Path(path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    known = _options(command)
    values = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in known:
            raise ConfigError(f"{path}: unknown key {key!r} for 'umlip {command.prog.split()[-1]}'; known keys: "
                              f"{', '.join(sorted(known))}")
        values[known[name].dest] = _checked(path, str(key), value, known[name])
    return values


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a ``--config`` file's values become the command's defaults, so flags still win."""
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = parser._subparsers._group_actions[0].choices.get(command) if command else None
    if sub is not None and "--config" in argv[:-1]:
        values = read_config(argv[argv.index("--config") + 1], sub)
        for action in sub._actions:
            if action.dest in values:
                action.required = False
        sub.set_defaults(**values)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def resolved_config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a command ran with, keyed by long option name (what ``--config`` reads back)."""
    command = build_parser()._subparsers._group_actions[0].choices[args.command]
    return {name: getattr(args, action.dest) for name, action in _options(command).items()}


def _write_resolved_config(args: argparse.Namespace) -> None:
    import yaml

    from .io import atomic_write_text

    out, json_out = getattr(args, "out", None), getattr(args, "json", None)
    if out and args.command not in ("relax",):
        target = Path(out) / CONFIG_NAME
    elif json_out and json_out != "-":
        target = Path(json_out).with_suffix(".config.yml")
    else:
        return
    if target.parent.is_dir():
        atomic_write_text(target, yaml.safe_dump(resolved_config(args), sort_keys=False))


def _handler(command: str) -> Callable[[argparse.Namespace], Any]:
    module, func = HANDLERS[command].split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
        result = _handler(args.command)(args)
    except UmlipError as exc:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"umlip {command}: error: {exc}", file=sys.stderr)
        return 2
    out = getattr(args, "json", None)
    if result is not None and out:
        from .io import atomic_write_json, to_jsonable

        if out == "-":
            print(json.dumps(to_jsonable(result), indent=2))
        else:
            atomic_write_json(out, result)
            print(f"wrote {out}", file=sys.stderr)
    _write_resolved_config(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
