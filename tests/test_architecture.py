"""The package's structure: layers import downward only, no module imports itself through others, every model
family implements the one interface, and no function is longer than a reader can hold."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

from umlip_helpers.models import FAMILY_NAMES, FamilyAdapter, ModelFamily, get_family

PACKAGE = Path(__file__).resolve().parents[1] / "umlip_helpers"
#: Each unit (a top-level module or subpackage of umlip_helpers) with its layer; a unit imports only units of its own
#: layer or below (and never in a loop, see the cycle test).
LAYERS: dict[str, int] = {
    "errors": 0, "io": 0, "results": 0, "choices": 0, "settings": 0, "paths": 0,
    "models": 1, "analysis": 1, "viewers": 1,
    "data": 2, "parents": 2, "labelling": 2,
    "metrics": 3, "md": 3, "finetune": 3, "properties": 3,
    "active": 4, "distill": 4, "export": 4, "lammps": 4, "profiles": 4,
    "sweep": 5, "book": 5, "cli": 5, "__init__": 5, "__main__": 5,
}
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every umlip_helpers module ``path`` imports, at the top or inside a function."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            found.update(name for name in names if name.startswith("umlip_helpers"))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("umlip_helpers"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in _imports(path):
            while target not in modules and "." in target:  # "from .models import load_calculator" names a symbol
                target = target.rsplit(".", 1)[0]
            if target != name and target in modules:
                targets.add(target)
        graph[name] = targets
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    units = {_unit(name) for name in _graph()}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_layers_import_downward_only():
    upward = [f"{source} -> {target} (layer {LAYERS[_unit(source)]} -> {LAYERS[_unit(target)]})"
              for source, targets in _graph().items() for target in targets
              if _unit(target) != "__init__" and LAYERS[_unit(target)] > LAYERS[_unit(source)]]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_modules():
    """Package faces (``__init__``) only hand names on, so edges into them count as edges into what they import."""
    graph = _graph()
    faces = {name for name in graph if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    flat = {name: {t for t in targets if t not in faces} | set().union(*(graph[t] for t in targets if t in faces))
            for name, targets in graph.items() if name not in faces}
    cycle = _cycle({name: targets - {name} for name, targets in flat.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layer_check_sees_an_upward_and_a_circular_import(tmp_path):
    """The checks above would fail on a cycle: the cycle finder on a small graph with one."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_registered_family_implements_the_interface(name):
    """Adding a family is one file plus one registry row: the file must hold all of this."""
    family = get_family(name)
    assert isinstance(family, ModelFamily) and family.name == name
    assert inspect.getmodule(type(family)).__name__ == f"umlip_helpers.models.{name}"
    assert family.package and "load" not in getattr(type(family), "__abstractmethods__", ())
    if name == "emt":
        assert family.adapter is None  # nothing to train
        return
    assert type(family).build is not ModelFamily.build, f"{name}: no build (tiny models for tests)"
    assert type(family)._torch_module is not ModelFamily._torch_module
    adapter = family.adapter
    assert isinstance(adapter, FamilyAdapter) and adapter.family == name and adapter.owner is family
    assert inspect.getmodule(type(adapter)).__name__ == f"umlip_helpers.models.{name}"
    assert adapter.heads and adapter.lora_targets and adapter.lora_rank > 0


def _long_functions() -> list[str]:
    """Functions with more than MAX_FUNCTION_LINES lines of code (their docstring, blank and comment lines not
    counted; a nested function counts in the function around it)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
            span = source[body[0].lineno - 1:node.end_lineno]
            code = [line for line in span if line.strip() and not line.strip().startswith("#")]
            if len(code) > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {len(code)} lines")
    return found


def test_no_function_is_longer_than_80_lines_of_code():
    long = _long_functions()
    assert not long, "split these:\n" + "\n".join(long)


MAX_MODULE_LINES = 400
#: the line a module over MAX_MODULE_LINES starts, in its docstring, to say why it is one piece
ONE_PIECE = "One piece:"
#: modules over MAX_MODULE_LINES allowed without the marker (none: a long module says why at its top)
LONG_MODULES: dict[str, str] = {}


def _long_modules() -> dict[str, int]:
    """Modules over MAX_MODULE_LINES lines whose docstring has no line starting with ONE_PIECE."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_MODULE_LINES and not any(line.startswith(ONE_PIECE) for line in doc.splitlines()):
            found[path.relative_to(PACKAGE.parent).as_posix()] = lines
    return found


def test_no_module_is_over_400_lines_unless_it_says_why_it_is_one_piece():
    long = _long_modules()
    unexplained = {name: lines for name, lines in long.items() if name not in LONG_MODULES}
    assert not unexplained, (f"split these, or start a line of the module docstring with {ONE_PIECE!r} and say why "
                             f"it is one thing: {unexplained}")
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"no longer over {MAX_MODULE_LINES} lines or now marked: remove from LONG_MODULES: {stale}"


def test_the_module_length_check_reads_the_marker(tmp_path, monkeypatch):
    """A long module fails the check until its docstring says why it is one piece."""
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "umlip_helpers")
    (tmp_path / "umlip_helpers").mkdir()
    module = tmp_path / "umlip_helpers" / "long.py"
    body = "\n".join(f"x{i} = {i}" for i in range(MAX_MODULE_LINES))
    module.write_text(f'"""A long module."""\n{body}\n')
    assert _long_modules() == {"umlip_helpers/long.py": MAX_MODULE_LINES + 1}
    module.write_text(f'"""A long module.\n\n{ONE_PIECE} a table of constants."""\n{body}\n')
    assert _long_modules() == {}


def test_the_minimal_family_of_the_book_page_loads_as_one_file_and_one_registry_row(tmp_path, monkeypatch):
    """book/adding_a_model_family.md: its family module, registered by one row, loads by path and checks elements."""
    import re
    import sys
    import types

    from ase.build import bulk

    from umlip_helpers import UnsupportedElements, load_calculator, model_info
    from umlip_helpers.io import sha256_file
    from umlip_helpers.models import check_elements, loading

    page = (PACKAGE.parent / "book" / "adding_a_model_family.md").read_text()
    source = next(block for block in re.findall(r"```python\n(.*?)```", page, re.S) if "class LennardJones" in block)
    module = types.ModuleType("umlip_helpers.models.lj")
    exec(compile(source, "book/adding_a_model_family.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "umlip_helpers.models.lj", module)
    monkeypatch.setattr(loading, "FAMILY_MODULES", {"lj": "ase", **loading.FAMILY_MODULES})
    monkeypatch.setattr(loading, "FAMILY_NAMES", tuple(loading.FAMILY_MODULES))

    checkpoint = tmp_path / "argon.json"
    checkpoint.write_text('{"elements": ["Ar"], "sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}')
    calc = load_calculator(checkpoint)
    assert model_info(calc).family == "lj" and model_info(calc).sha256 == sha256_file(checkpoint)
    argon = bulk("Ar", "fcc", a=5.26)
    argon.calc = calc
    assert argon.get_potential_energy() < 0  # bound near the LJ minimum
    with pytest.raises(UnsupportedElements, match="Ni"):
        check_elements(bulk("Ni"), calc)
    with pytest.raises(NotImplementedError, match="'lj' family"):
        from umlip_helpers.models import adapter_for

        adapter_for(calc)


def test_provenance_is_reached_through_model_info_only():
    """No side-door attributes: what a calculator is comes from umlip_helpers.io.model_info."""
    import re

    pattern = re.compile(r"\bumlip_(info|family|base)\b")
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}" for path in PACKAGE.rglob("*.py")
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
