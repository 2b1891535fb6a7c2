"""Every command that README.md, book/*.md and the notebooks' markdown show a user, checked as shown (issue 30).

What is collected, and what is done with it:

* Each line of a ```bash (sh, shell, console) block that calls ``umlip`` (or ``-m umlip_helpers.cli``, as under
  torchrun) is **run**, in the order shown, as ``umlip_helpers.cli.main(argv)`` in one scratch folder per document;
  the folder links ``data/`` and ``notebooks/`` of the checkout, since the commands are written for its root. It
  must exit 0, and a sweep must finish every run. One command per line; ``\\`` continues a line.
* A block right after ``<!-- not-run: REASON -->`` (it needs GPUs, a cluster or a large download) is only
  **parsed** by the command line's own parser, and a sweep's ``--param`` are checked against its notebook.
* A ```yaml block right after ``<!-- file: NAME -->`` is written to NAME in the scratch folder before anything runs
  (a ``--config`` file that the commands use).
* Inline code spans that are ``umlip`` commands with options (```umlip md --model M ...```) are parsed, not run:
  prose may name placeholders such as FILE.
* ``make`` lines are dry-run (``make -n``): their targets and variables must exist. ``lmp`` lines are collected and
  not run here (tests/test_export.py runs LAMMPS).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from umlip_helpers.cli import HANDLERS, build_parser, main
from umlip_helpers.sweep import expand_grid, parse_params

ROOT = Path(__file__).resolve().parents[1]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->", re.S)
FILE = re.compile(r"<!--\s*file:\s*(\S+)\s*-->")
#: commands that execute notebooks (a sweep runs each of its notebooks under papermill): more than 30 s each
SLOW_COMMANDS = {"sweep"}


@dataclass(frozen=True)
class Shown:
    """One command as a document shows it."""

    doc: str  # path relative to the checkout
    line: int  # 1-based line of the command (for a notebook: the markdown cell's index)
    kind: str  # "umlip", "make" or "lmp"
    argv: tuple[str, ...]  # the arguments after `umlip` (or `make`, or `lmp`)
    not_run: str | None  # the reason it is only parsed; None: it runs
    inline: bool = False

    @property
    def id(self) -> str:
        where = f"cell{self.line}" if self.doc.endswith(".ipynb") else f"L{self.line}"
        return f"{self.doc}:{where}:{self.kind} {' '.join(self.argv[:1])}".strip()

    def __str__(self) -> str:
        return f"{self.doc} ({'cell' if self.doc.endswith('.ipynb') else 'line'} {self.line}): " \
               f"{self.kind} {shlex.join(self.argv)}"


def classify(tokens: list[str]) -> tuple[str, list[str]] | None:
    """("umlip", argv) / ("make", argv) / ("lmp", argv) for a shell line's tokens, or None for any other line."""
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if not tokens:
        return None
    if Path(tokens[0]).name == "umlip":
        return "umlip", tokens[1:]
    if "umlip_helpers.cli" in tokens[1:]:
        at = tokens.index("umlip_helpers.cli")
        if tokens[at - 1] == "-m":
            return "umlip", tokens[at + 1:]
    if tokens[0] == "make":
        return "make", tokens[1:]
    if Path(tokens[0]).name == "lmp":
        return "lmp", tokens[1:]
    return None


def _shell_commands(doc: str, block: str, first_line: int, not_run: str | None) -> list[Shown]:
    found, line_no, pending, pending_start = [], first_line, "", first_line
    for raw in block.splitlines():
        line_no += 1
        if not pending:
            pending_start = line_no
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text, pending = pending + raw, ""
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError as exc:  # unbalanced quotes: a command a user cannot paste
            tokens = ["umlip", f"<unparseable shell line: {exc}>"] if "umlip" in text else []
        kind = classify(tokens)
        if kind:
            found.append(Shown(doc, pending_start, kind[0], tuple(kind[1]), not_run))
    return found


def _inline_commands(doc: str, tokens, line_of) -> list[Shown]:
    found = []
    for token in tokens:
        for child in token.children or []:
            text = child.content.strip()
            if child.type == "code_inline" and text.startswith("umlip ") and " --" in text:
                found.append(Shown(doc, line_of(token), "umlip", tuple(shlex.split(text)[1:]), "inline", True))
    return found


def scan_markdown(doc: str, text: str, line_of=None) -> tuple[list[Shown], dict[str, str]]:
    """The commands of one markdown text, and the files (name -> content) that its `<!-- file: -->` blocks give."""
    tokens = MarkdownIt("commonmark").parse(text)
    line_of = line_of or (lambda token: token.map[0] + 1)
    commands, files = [], {}
    for i, token in enumerate(tokens):
        before = tokens[i - 1].content if i and tokens[i - 1].type == "html_block" else ""
        if token.type == "fence" and token.info.strip() in SHELL_FENCES:
            reason = NOT_RUN.search(before)
            commands += _shell_commands(doc, token.content, line_of(token), reason.group(1) if reason else None)
        elif token.type == "fence" and FILE.search(before):
            files[FILE.search(before).group(1)] = token.content
    commands += _inline_commands(doc, [t for t in tokens if t.type == "inline"], line_of)
    return commands, files


def collect(root: Path = ROOT) -> tuple[list[Shown], dict[str, dict[str, str]]]:
    """Every command shown in README.md, book/*.md and the notebooks' markdown cells, and each document's files."""
    commands, files = [], {}
    for path in [root / "README.md", *sorted((root / "book").glob("*.md"))]:
        doc = path.relative_to(root).as_posix()
        found, files[doc] = scan_markdown(doc, path.read_text())
        commands += found
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        doc = path.relative_to(root).as_posix()
        files[doc] = {}
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "markdown":
                found, cell_files = scan_markdown(doc, cell.source, line_of=lambda token, index=index: index)
                commands += found
                files[doc].update(cell_files)
    return commands, files


def parse_problem(argv: list[str], root: Path = ROOT, partial: bool = False) -> str | None:
    """Why the umlip parser refuses ``argv`` (or a sweep's parameters do not fit its notebook), else None.
    ``partial``: prose may name a command with some of its options only, so no option is required."""
    parser = build_parser()
    if partial:
        for command in parser._subparsers._group_actions[0].choices.values():
            for action in command._actions:
                action.required = False
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help
            return None
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "argparse exited"
    if args.command == "sweep" and args.notebook:
        try:
            expand_grid(root / args.notebook, parse_params(args.param))
        except Exception as exc:  # SweepError: an undeclared parameter or a value of the wrong type
            return f"{type(exc).__name__}: {exc}"
    return None


COMMANDS, FILES = collect()
RUN = [c for c in COMMANDS if c.kind == "umlip" and c.not_run is None]
PARSE = [c for c in COMMANDS if c.kind == "umlip" and c.not_run is not None]
MAKE = [c for c in COMMANDS if c.kind == "make"]


def _params(commands: list[Shown]):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.argv[:1] and c.argv[0] in SLOW_COMMANDS else [])
            for c in commands]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A scratch folder per document: links to data/ and notebooks/, and the document's `<!-- file: -->` files."""
    folders: dict[str, Path] = {}

    def folder(doc: str) -> Path:
        if doc not in folders:
            path = tmp_path_factory.mktemp(re.sub(r"\W", "_", doc))
            for name in ("data", "notebooks"):
                (path / name).symlink_to(ROOT / name)
            for name, content in FILES.get(doc, {}).items():
                (path / name).write_text(content)
            folders[doc] = path
        return folders[doc]

    return folder


@pytest.mark.parametrize("shown", _params(RUN))
def test_shown_command_runs(shown, scratch, monkeypatch, capsys):
    monkeypatch.chdir(scratch(shown.doc))
    code = main(list(shown.argv))
    captured = capsys.readouterr()
    assert code == 0, f"{shown} exited {code}:\n{captured.err[-3000:]}"
    if shown.argv[0] == "sweep":
        args = build_parser().parse_args(list(shown.argv))
        table = pd.read_csv(Path(args.out) / "sweep.csv")
        failed = table[table["status"] != "done"]
        assert failed.empty, f"{shown}: runs failed:\n{failed[['run', 'error']].to_string()}"


@pytest.mark.parametrize("shown", _params(PARSE))
def test_shown_command_parses(shown):
    problem = parse_problem(list(shown.argv), partial=shown.inline)
    assert problem is None, f"{shown}: {problem}"


@pytest.mark.parametrize("shown", _params(MAKE))
def test_shown_make_line_dry_runs(shown):
    run = subprocess.run(["make", "-n", "-B", *shown.argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{shown}: {run.stderr.strip()}"


def test_readme_runs_every_command():
    shown = {c.argv[0] for c in RUN if c.doc == "README.md" and c.argv}
    assert set(HANDLERS) <= shown, f"the README runs no example of: {sorted(set(HANDLERS) - shown)}"


def test_placeholders_and_unmarked_blocks_are_caught(tmp_path):
    text = ("Fine-tune:\n\n```bash\numlip finetune ... --nproc 4\numlip eos --model emt \\\n    --structure Ni\n"
            "make setup\n```\n\n<!-- not-run: needs SLURM -->\n```bash\n"
            "srun torchrun --nproc-per-node 4 -m umlip_helpers.cli sweep notebooks/01_ni_eos.ipynb --param model=a\n"
            "```\n\n<!-- file: c.yml -->\n```yaml\nepochs: 1\n```\n\nInline: `umlip md --data x.xyz` and `umlip md`.\n")
    commands, files = scan_markdown("doc.md", text)
    placeholder, eos, make, sweep, inline = commands
    assert (placeholder.line, placeholder.not_run, eos.line, eos.argv) == (4, None, 5, ("eos", "--model", "emt",
                                                                                        "--structure", "Ni"))
    assert make.kind == "make" and make.argv == ("setup",) and files == {"c.yml": "epochs: 1\n"}
    assert sweep.not_run == "needs SLURM" and sweep.argv[0] == "sweep" and inline.inline
    assert "required: --train, --out" in parse_problem(list(placeholder.argv))
    assert parse_problem(list(eos.argv)) is None
    assert "does not declare a parameter 'model'" in parse_problem(list(sweep.argv))
    assert "unrecognized arguments: --data x.xyz" in parse_problem(list(inline.argv), partial=True)


def test_setup_passes_torch_index_through():
    def dry_run(*variables: str) -> str:
        return subprocess.run(["make", "-n", "-B", "setup", *variables], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    default = dry_run().splitlines()
    assert ".venv/bin/python -m pip install -q torch==2.13.0" in default  # the CPU default, exactly as before
    assert "touch .venv/.umlip-installed" in default
    cuda = dry_run("TORCH_INDEX=https://download.pytorch.org/whl/cu126").splitlines()
    assert (".venv/bin/python -m pip install -q torch==2.13.0+cu126 --index-url "
            "https://download.pytorch.org/whl/cu126") in cuda
    assert "touch .venv/.umlip-installed-cu126" in cuda  # its own stamp: switching builds reinstalls torch
