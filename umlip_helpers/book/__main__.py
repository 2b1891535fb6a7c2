"""Build the book: ``python -m umlip_helpers.book --profile ci|full`` (what ``make book`` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UmlipError
from ..io import atomic_write_text
from .execution import build
from .toc import render_toc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m umlip_helpers.book", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "full"), default="ci")
    parser.add_argument("--root", default=".", help="the umlip-book checkout (default: the current folder)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds per notebook (default: 900 for ci, 21600 for full)")
    parser.add_argument("--update-toc", action="store_true", help="rewrite _toc.yml from notebooks/ and stop")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.update_toc:
            atomic_write_text(root / "_toc.yml", render_toc(root))
            print(f"wrote {root / '_toc.yml'}", file=sys.stderr)
            return 0
        build(args.profile, root, timeout=args.timeout or (900 if args.profile == "ci" else 6 * 3600))
    except UmlipError as exc:
        print(f"umlip book: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
