"""The book's structure: table of contents, notebook template, citations, generated pages, structure viewer."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from ase.build import bulk, molecule
from ase.data.colors import jmol_colors

from umlip_helpers.book import benchmark_tables, render_toc, static_outputs, toc_entries, toc_problems
from umlip_helpers.viewers import StructureView, plot_structure, view_structure

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_toc_lists_every_notebook_and_every_entry_exists():
    assert toc_problems(ROOT) == []
    assert (ROOT / "_toc.yml").read_text() == render_toc(ROOT), \
        "_toc.yml is stale: run `python -m umlip_helpers.book --update-toc`"


def test_toc_problems_are_reported(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    for page in ("intro", "installation", "bring_your_own_model", "bring_your_own_data", "adding_a_model_family",
                 "methods", "gpu_and_hpc", "results", "bibliography"):
        (tmp_path / "book" / f"{page}.md").write_text(f"# {page}\n")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "05_md.ipynb")
    (tmp_path / "_toc.yml").write_text(render_toc(tmp_path))
    assert "notebooks/05_md" in toc_entries(tmp_path) and toc_problems(tmp_path) == []
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "11_new.ipynb")
    (tmp_path / "book" / "methods.md").unlink()
    assert sorted(toc_problems(tmp_path)) == [
        "_toc.yml lists book/methods, but neither book/methods.md nor book/methods.ipynb exists",
        "notebooks/11_new.ipynb is not in _toc.yml"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    params = tagged[0]
    assert params is code[0], f"{path.name}: the parameters cell must be the first code cell"
    assigned = {node.targets[0].id: node.value for node in ast.parse(params.source).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    for name, value in (("profile", "ci"), ("results_json", None), ("device", "auto")):
        assert name in assigned and isinstance(assigned[name], ast.Constant) and assigned[name].value == value, \
            f"{path.name}: the parameters cell must set {name} = {value!r}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{path.name}: no title"
    assert re.search(r"settings\s*=\s*\{", "".join(c.source for c in code)), f"{path.name}: no settings dict"
    assert "save_notebook_results(results_json" in code[-1].source or any(
        "save_notebook_results(results_json" in c.source for c in code[-2:]), f"{path.name}: no summary cell"
    assert any("what's next" in c.source.lower() for c in nb.cells if c.cell_type == "markdown"), \
        f"{path.name}: no \"What's next\" section"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: committed with outputs in cells {dirty}; clear them"
    assert "widgets" not in nb.metadata, f"{path.name}: committed with widget state"


def _bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text()))


def test_every_citation_is_in_references_bib():
    keys = _bib_keys()
    sources = [p.read_text() for p in (ROOT / "book").glob("*.md")]
    sources += ["\n".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in NOTEBOOKS]
    cited = {key.strip() for text in sources for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
             for key in group.split(",")}
    assert cited, "the prose cites nothing"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_bib_entries_have_dois_or_a_todo():
    text = (ROOT / "references.bib").read_text()
    entries = re.split(r"\n(?=@)", text)
    for entry in entries:
        match = re.match(r"@\w+\{([^,]+),", entry.strip())
        if not match:
            continue
        doi = re.search(r"doi\s*=\s*\{([^}]+)\}", entry)
        if doi:
            assert re.fullmatch(r"10\.\d{4,9}/\S+", doi.group(1)), (match.group(1), doi.group(1))
        else:
            assert "TODO" in entry, f"{match.group(1)}: no DOI and no TODO saying why"
    assert len(_bib_keys()) == len(re.findall(r"^@", text, re.M)), "duplicate bibtex keys"


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_benchmark_studies_by_recorded_script_then_location(tmp_path):
    bench = tmp_path / "benchmarks"
    _write(bench / "speed.py", '"""Speed of things: a study."""')
    _write(bench / "accuracy.py", '"""Accuracy against DFT.\n\nMore text."""')
    results = bench / "results"
    _write(results / "accuracy.json", {
        "energy_mae_mev_per_atom": 12.3456, "speedup_vs_baseline": {"gpu": 3.0},
        "models": [{"name": "a", "force_mae_ev_per_angstrom": 0.05}, {"name": "b", "extra": True}],
        "provenance": {"created_utc": "2026-01-01T00:00:00+00:00", "model": {"name": "sevennet-0"},
                       "script": "benchmarks/accuracy.py", "argv": ["python", "benchmarks/accuracy.py", "--x", "1"]}})
    _write(results / "accuracy" / "ci.json", {"energy_mae_mev_per_atom": 20.0, "provenance": {}})  # by location
    _write(results / "accuracy_cuda.json", {"provenance": {"script": "benchmarks/speed.py"}})  # by recorded script
    _write(results / "broken.json", "{not json")
    studies = {s.script: s for s in benchmark_tables(tmp_path)}
    assert set(studies) == {"speed", "accuracy", "broken"}
    acc = studies["accuracy"]
    assert acc.status == "ok" and acc.title == "Accuracy against DFT"
    assert [v.path for v in acc.variants] == ["benchmarks/results/accuracy/ci.json"]
    assert acc.headline.command() == "python benchmarks/accuracy.py --x 1"
    summary, models = acc.tables
    assert summary.rows == [["energy MAE (meV/atom)", "12.3"], ["speedup vs baseline [GPU]", "3.00"]]
    assert models.header == ["name", "force MAE (eV/Å)", "extra"]
    assert models.rows == [["a", "0.0500", "–"], ["b", "–", "yes"]]
    speed = studies["speed"]  # no headline, one variant matched by its recorded script, not by its name
    assert speed.status == "no headline" and [v.path for v in speed.variants] == [
        "benchmarks/results/accuracy_cuda.json"]
    assert studies["broken"].status == "unreadable"
    (results / "accuracy_cuda.json").unlink()
    assert {s.script: s for s in benchmark_tables(tmp_path)}["speed"].status == "not yet run"


def test_benchmark_records_keyed_by_model_become_rows(tmp_path):
    _write(tmp_path / "benchmarks" / "results" / "props.json", {"models": {
        "m1": {"properties": {"a0": {"value": 3.5, "reference": 3.52, "percent_error": -0.57, "unit": "Å"}},
               "per_element": {str(i): float(i) for i in range(20)}, "wall_s": 2.0},
        "m2": {"properties": {"a0": {"value": 3.6, "reference": 3.52, "percent_error": None}}, "wall_s": 1.0}}})
    _write(tmp_path / "benchmarks" / "results" / "timing.json", {"models": {
        "m1": {"per_element": {str(i): float(i) for i in range(20)}, "wall_s": 2.0}, "m2": {"wall_s": 1.0}}})
    studies = {s.script: s for s in benchmark_tables(tmp_path)}
    (props,) = studies["props"].tables  # properties against references: one column per model
    assert props.header == ["property", "reference", "m1", "m2"]
    assert props.rows == [["a0 (Å)", "3.520", "3.500 (-1\u00a0%)", "3.600"]]
    (timing,) = studies["timing"].tables  # the 20-value dict stays in the JSON
    assert timing.header == ["name", "wall (s)"] and timing.rows == [["m1", "2.00"], ["m2", "1.00"]]


def test_benchmark_provenance_records_script_and_argv():
    from umlip_helpers.io import benchmark_provenance

    prov = benchmark_provenance(ROOT / "benchmarks" / "delta_elements.py", ["--profile", "ci"], None, profile="ci")
    assert prov["script"] == "benchmarks/delta_elements.py"
    assert prov["argv"] == ["python", "benchmarks/delta_elements.py", "--profile", "ci"]
    assert prov["parameters"] == {"profile": "ci"}  # argv is not a setting: resuming compares parameters only


def _committed(script: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{script}.json").read_text())


def test_each_committed_study_leads_with_its_finding():
    """The overview's number and the first summary row of each study are its finding, not a setting."""
    from umlip_helpers.book.result_tables import key_numbers
    from umlip_helpers.book.study_tables import KEY_NUMBERS

    tuned = key_numbers("finetune_ymno3", _committed("finetune_ymno3"))
    assert tuned[0] == ("forces MAE (eV/Å) [before → after]", "sevennet-0 lora 0.0742 → 0.0293")
    studies = {s.script: s for s in benchmark_tables(ROOT)}
    assert studies["finetune_ymno3"].tables[0].rows[0] == list(tuned[0])
    delta = studies["delta_elements"].tables[0]
    assert delta.rows[:2] == [["mean Δ gauge (meV/atom) [sevennet-0]", "3.74"],
                              ["mean Δ gauge (meV/atom) [chgnet-0.3.0]", "4.27"]]
    assert not any("npoints" in row[0] for row in delta.rows)
    for script, study in studies.items():
        if script not in KEY_NUMBERS or study.status != "ok":
            continue
        first, value = key_numbers(script, study.headline.data)[0]
        if value.count(",") < 6:  # a number of more records stays in its record table
            assert study.tables[0].rows[0][0].startswith(first.split(" [")[0]), (script, study.tables[0].rows[0])


def test_numbers_show_the_digits_they_support():
    from umlip_helpers.book.result_tables import fmt

    assert fmt(0.029343, "test_after.forces_mae_ev_per_angstrom") == "0.0293"
    assert fmt(3.50431, "a0_angstrom") == "3.504" and fmt(10.9012, "v0_angstrom3_per_atom") == "10.90"
    assert fmt(39.1111) == "39.1" and fmt(636.94) == "637" and fmt(12345.6) == "12,346" and fmt(1.3e-7) == "1.30e-07"
    assert fmt(1.002) == "1.00" and fmt(0.0) == "0.00" and fmt(-0.0012345) == "-0.00123"
    assert fmt(7) == "7" and fmt(264) == "264" and fmt(10976) == "10,976"
    assert fmt(True) == "yes" and fmt(None) == "–" and fmt("sevennet-0") == "sevennet-0"
    assert fmt(0.1, "lambda") == "0.1" and fmt(0.1, "runs.lambda") == "0.1"  # a setting as given


def test_labels_name_the_quantity_and_its_unit():
    from umlip_helpers.book.result_tables import label

    assert label("frequency_mae_thz_base") == "frequency MAE (THz) [base]"
    assert label("forces_mae_ev_per_angstrom.naive") == "forces MAE (eV/Å) [naive]"
    assert label("mae_ratio_finetuned_over_base") == "MAE ratio finetuned over base"  # a ratio, not a qualifier
    assert label("chosen_student") == "chosen student"
    assert label("md_ms_per_step.unit_cell") == "MD (ms/step) [unit cell]" and label("ni.a0_angstrom") == "a0 (Å) [ni]"
    assert label("meets_targets.speed") == "meets targets [speed]"
    assert label("cu_o_energy_difference_ev") == "Cu–O energy difference (eV)"
    assert label("gpmin_parent_calls_percent_of_bfgs") == "GPMin parent calls (% of BFGS)"


def test_a_notebook_summary_becomes_a_table_with_units():
    from umlip_helpers.book.result_tables import summary_table

    table = summary_table({"model": "sevennet-0", "n_rattled": 4, "frequency_mae_thz_base": 0.81234567890123,
                           "forces_mae_ev_per_angstrom": {"naive": 0.123456789, "periodic": 0.0987654321},
                           "energy_difference_ev": None, "strategies": [{"a": 1}], "provenance": {"x": 1}})
    assert table.index.name == "quantity"
    assert table["value"].to_dict() == {
        "model": "sevennet-0", "n rattled": "4", "frequency MAE (THz) [base]": "0.812",
        "forces MAE (eV/Å) [naive]": "0.123", "forces MAE (eV/Å) [periodic]": "0.0988", "energy difference (eV)": "–"}


@pytest.fixture(scope="module")
def results_page(tmp_path_factory) -> str:
    """The Results page alone, built by Sphinx with the extension over this checkout's benchmarks/results."""
    from sphinx.application import Sphinx

    src = tmp_path_factory.mktemp("results_src")
    (src / "book").mkdir()
    (src / "book" / "results.md").write_text((ROOT / "book" / "results.md").read_text())
    (src / "conf.py").write_text(f"extensions = ['myst_parser', 'umlip_helpers.book.sphinx_ext']\n"
                                 f"root_doc = 'book/results'\numlip_results_root = {str(ROOT)!r}\n")
    out = src / "_build"
    app = Sphinx(str(src), str(src), str(out), str(out / ".doctrees"), "html", status=None, warning=None,
                 freshenv=True)
    app.build()
    return (out / "book" / "results.html").read_text()


def test_results_page_has_one_section_per_script(results_page):
    scripts = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
    sections = re.findall(r'<section id="study-([\w-]+)">', results_page)
    assert sorted(sections) == sorted(s.replace("_", "-") for s in scripts)
    batching = results_page.split('id="study-finetune-batching"')[1].split("<section")[0]
    assert "not yet run" not in batching and "H100" in batching


def test_results_page_lists_every_result_file_once(results_page):
    files = sorted(p.relative_to(ROOT / "benchmarks" / "results").as_posix()
                   for p in (ROOT / "benchmarks" / "results").rglob("*.json"))
    links = re.findall(r'href="[^"]*benchmarks/results/([^"]+\.json)"', results_page)
    assert sorted(links) == files, "each result file is linked once: as a headline or as a variant line"


def test_results_page_is_compact(results_page):
    # the flat page of one table per file had 126 tables and 2,680 rows; by study it has about 26 and 240
    assert results_page.count("<table") < 40 and results_page.count("<tr") < 600


def test_static_outputs_drop_widget_views():
    outputs = [nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {},
                                                             "text/plain": "bar"}),
               nbformat.v4.new_output("stream", text="kept")]
    assert [o.get("text") for o in static_outputs(outputs)] == ["kept"]


def test_view_structure_static_view(monkeypatch):
    monkeypatch.setenv("UMLIP_STATIC_VIEWS", "1")
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True)
    view = view_structure(crystal)
    assert isinstance(view, StructureView)
    bundle = view._repr_mimebundle_()
    assert bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n" and len(bundle["image/png"]) > 2000
    html = bundle["text/html"]
    assert "<canvas" in html and "<script>" in html and "http" not in html.split("<script>")[1]
    payload = json.loads(re.search(r"const d = (\{.*?\}), root", html).group(1))
    assert len(payload["frames"]) == 1 and len(payload["frames"][0]) == 4 and payload["cells"][0][0][0] == 3.6
    red, green, blue = (int(255 * c) for c in jmol_colors[29])
    assert payload["colors"][0] == f"#{red:02x}{green:02x}{blue:02x}"  # Jmol copper


def test_view_structure_trajectory_is_thinned():
    frames = []
    for i in range(250):
        water = molecule("H2O")
        water.positions[0, 2] += 0.001 * i
        frames.append(water)
    view = view_structure(frames, interactive="no", max_frames=50)
    assert len(view.frames) == 50 and view.labels[0] == "frame 1 / 250" and view.labels[-1] == "frame 250 / 250"
    assert view.frames[-1].positions[0, 2] == pytest.approx(frames[-1].positions[0, 2])
    assert 'type="range"' in view._repr_html_()
    with pytest.raises(ValueError, match="frame 1 has 4 atoms"):
        view_structure([molecule("H2O"), molecule("NH3")], interactive="no")
    with pytest.raises(ValueError, match="interactive must be"):
        view_structure(molecule("H2O"), interactive="maybe")


def test_view_structure_widget_when_asked():
    nglview = pytest.importorskip("nglview")
    widget = view_structure(bulk("Ni", cubic=True), interactive="yes")
    assert isinstance(widget, nglview.NGLWidget)


def test_plot_structure_draws_atoms():
    ax = plot_structure(bulk("Ni", cubic=True))
    assert len(ax.patches) >= 4 and ax.get_title() == "Ni4"
