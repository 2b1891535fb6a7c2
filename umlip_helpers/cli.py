"""The ``umlip`` command line. Argument names are fixed here (batch jobs depend on them); each command
is carried out by a function in the module that owns the workflow, imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Callable, Sequence

#: command -> "module:function"; each function takes the parsed Namespace and returns a JSON-able dict
HANDLERS = {
    "models": "umlip_helpers.models.table:cli_models",
    "evaluate": "umlip_helpers.metrics:cli_evaluate",
    "eos": "umlip_helpers.properties.eos:cli_eos",
    "finetune": "umlip_helpers.finetune:cli_finetune",
    "md": "umlip_helpers.md:cli_md",
    "relax-active": "umlip_helpers.active:cli_relax_active",
    "sweep": "umlip_helpers.sweep:cli_sweep",
}


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="sevennet-0",
                   help="registered name, checkpoint file or fine-tuned output directory (default: sevennet-0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is often fastest on 2 cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umlip", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                   help="print JSON (or write it to OUT)")

    p = sub.add_parser("evaluate", help="errors of a model against labelled DFT frames")
    _model_arg(p)
    p.add_argument("--data", required=True, help="vasprun.xml, OUTCAR or extxyz (plain or .gz)")
    p.add_argument("--max-frames", type=int, default=None, help="first N frames in file order")
    p.add_argument("--json", default=None, metavar="OUT")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a parity plot")

    p = sub.add_parser("eos", help="Birch-Murnaghan equation of state")
    _model_arg(p)
    p.add_argument("--structure", default="Ni", help="element symbol (bulk crystal) or structure file")
    p.add_argument("--json", default=None, metavar="OUT")

    p = sub.add_parser("finetune", help="fine-tune a model on DFT frames")
    _model_arg(p)
    p.add_argument("--train", required=True)
    p.add_argument("--val", default=None)
    p.add_argument("--strategy", choices=("lora", "head", "full"), default="lora")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4, help="frames per optimiser step (on a GPU, 16 costs about "
                                                                  "what 4 does)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    p.add_argument("--json", default=None, metavar="OUT")

    p = sub.add_parser("md", help="molecular dynamics with progress, restart and an explosion guard")
    _model_arg(p)
    p.add_argument("--structure", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--ensemble", choices=("nvt", "npt", "nve"), default="nvt")
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--out", default=None, metavar="DIR", help="trajectory and log directory")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", default=None, metavar="OUT")

    p = sub.add_parser("relax-active", help="online active-learning relaxation with a parent calculator")
    _model_arg(p)
    p.add_argument("--parent", choices=("emt", "gpaw"), default="emt")
    p.add_argument("--structure", required=True)
    p.add_argument("--fmax", type=float, default=0.03)
    p.add_argument("--query", choices=("k_steps", "relax_only", "uncertainty"), default="k_steps")
    p.add_argument("--k", type=int, default=10, help="surrogate steps between parent calls")
    p.add_argument("--correction", choices=("gp", "secant", "anchor", "none"), default="gp")
    p.add_argument("--first-parent-call", choices=("start", "prior_minimum"), default="start",
                   help="call the parent first at the start structure, or at the prior's own minimum")
    p.add_argument("--max-parent-calls", type=int, default=100)
    p.add_argument("--json", default=None, metavar="OUT")

    p = sub.add_parser("sweep", help="run a notebook over a parameter grid with papermill on Dask")
    p.add_argument("notebook")
    p.add_argument("--param", action="append", default=[], metavar="K=V1,V2", help="repeat for each parameter")
    p.add_argument("--scheduler", choices=("local", "slurm"), default="local")
    p.add_argument("--out", default="runs/sweep", metavar="DIR")
    p.add_argument("--workers", type=int, default=None)
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], Any]:
    module, func = HANDLERS[command].split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import UmlipError

    try:
        result = _handler(args.command)(args)
    except UmlipError as exc:
        print(f"umlip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    out = getattr(args, "json", None)
    if result is not None and out:
        from .io import atomic_write_json, to_jsonable

        if out == "-":
            print(json.dumps(to_jsonable(result), indent=2))
        else:
            atomic_write_json(out, result)
            print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
