"""The book's Sphinx extension (listed in ``_config.yml`` under ``sphinx.extra_extensions``), with two directives:
``{umlip-benchmark-results}`` renders ``benchmarks/results/`` by study (:mod:`.studies`) each time the book is built,
and ``{umlip-model-table}`` renders the model registry.

The results page has one section per page of the book, one subsection per ``benchmarks/*.py``: its title, the
headline's main numbers with units (:mod:`.result_tables`), its plot where there is one, its provenance (date,
command line, machine), and one line per variant."""

from __future__ import annotations

import os
from pathlib import Path

from docutils import nodes

from .result_tables import key_numbers
from .studies import OTHER_PAGE, RESULTS_DIR, ResultFile, Study, benchmark_studies, page_title

RESULTS_DOC = "book/results"
#: a study with more variants than this lists them collapsed
COLLAPSE_VARIANTS = 6


def _docutils_table(header: list[str], rows: list[list[str]]):
    from docutils import nodes

    table = nodes.table(classes=["umlip-results-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells):
        tr = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            tr += entry
        return tr

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells)
    group += head
    group += body
    return table


def _collapsible(summary: str, children: list) -> list:
    """children inside an HTML <details> (raw html around them; other builders show them open)."""
    from docutils import nodes

    return [nodes.raw("", f"<details class=\"umlip-details\"><summary>{summary}</summary>", format="html"),
            *children, nodes.raw("", "</details>", format="html")]


def _provenance_text(item: ResultFile) -> str:
    prov = item.provenance
    bits = []
    if item.profile():
        bits.append(f"profile {item.profile()}")
    if prov.get("created_utc"):
        bits.append(str(prov["created_utc"]).replace("T", " ").replace("+00:00", " UTC"))
    model = prov.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    if name:
        bits.append(f"model {name}")
    machine = ", ".join(str(prov[k]) for k in ("host", "cpu") if prov.get(k))
    device = (prov.get("parameters") or {}).get("device_name") if isinstance(prov.get("parameters"), dict) else None
    if device and device != "cpu":
        machine += f", {device}"
    if machine:
        bits.append(f"machine {machine}")
    return "; ".join(bits)


class _BenchmarkResults:
    """The ``{umlip-benchmark-results}`` directive: benchmarks/results/ by study, read at build time (mixed into
    Sphinx's ``SphinxDirective`` by :func:`_results_directive`, so that this module imports without Sphinx)."""

    def _root(self) -> Path:
        return Path(self.config.umlip_results_root or self.env.srcdir)

    def _link(self, root: Path, rel: str, text: str, page: bool = False):
        """A link from this page to a file of the checkout (or, page=True, to a page of the book)."""
        here = Path(self.env.app.outdir) / Path(self.env.docname).parent
        if page:
            target = os.path.relpath(Path(self.env.app.outdir) / f"{rel}.html", here)
        else:
            target = os.path.relpath(root / rel, here)
        return nodes.reference("", text, refuri=Path(target).as_posix())

    def _section(self, title: str, ident: str, title_node=None):
        section = nodes.section(ids=[nodes.make_id(ident)], names=[nodes.fully_normalize_name(ident)])
        section += title_node or nodes.title(text=title)
        return section

    def run(self):
        root = self._root()
        studies = benchmark_studies(root)
        out: list = [self._overview(studies)]
        pages = list(dict.fromkeys(s.page for s in studies))
        for page in pages:
            title = OTHER_PAGE if page == OTHER_PAGE else page_title(root, page)
            heading = nodes.title()
            if page == OTHER_PAGE:
                heading += nodes.Text(title)
            else:
                heading += self._link(root, page, title, page=True)
            section = self._section(title, f"results-{page}", heading)
            for study in (s for s in studies if s.page == page):
                section += self._study(root, study)
            out.append(section)
        return out

    def _overview(self, studies: list[Study]):
        rows = []
        for s in studies:  # the first key number of each, at most three entries of a per-model list
            numbers = key_numbers(s.script, s.headline.data)[:1] if s.status == "ok" else []
            text = s.status if s.status != "ok" else "see below"
            if numbers:
                name, value = numbers[0]
                parts = value.split(", ")
                text = f"{name}: " + ", ".join(parts[:3]) + (", …" if len(parts) > 3 else "")
            profile = s.headline.profile() if s.status == "ok" else ""
            rows.append([s.script, text, profile])
        return _docutils_table(["study", "headline number", "profile"], rows)

    def _study(self, root: Path, study: Study):
        section = self._section(study.title, f"study-{study.script}")
        para = nodes.paragraph()
        para += nodes.literal(text=f"benchmarks/{study.script}.py")
        if study.status == "ok":
            para += nodes.Text(" · headline ")
            para += self._link(root, study.headline.path, Path(study.headline.path).name)
        section += para
        if study.status != "ok":
            para = nodes.paragraph(classes=["umlip-not-run"])
            para += nodes.strong(text=f"{study.status}: ")
            para += nodes.literal(text=study.note) if study.status == "not yet run" else nodes.Text(study.note)
            section += para
        for key in ("note", "co_geometry_note"):
            text = study.headline.data.get(key) if study.status == "ok" else None
            if isinstance(text, str) and text:
                note = nodes.paragraph(classes=["umlip-note"])
                note += nodes.emphasis(text=f"Note: {text}")
                section += note
        for table in study.tables:
            children = [nodes.paragraph(text=f"{table.caption}:"), _docutils_table(table.header, table.rows)] \
                if not table.collapsed else [_docutils_table(table.header, table.rows)]
            section += _collapsible(f"{table.caption}: show the table", children) if table.collapsed else children
        for plot in study.plots:
            here = Path(self.env.app.outdir) / Path(self.env.docname).parent
            src = Path(os.path.relpath(root / plot, here)).as_posix()
            section += nodes.raw("", f'<img class="umlip-plot" src="{src}" alt="{plot}" style="max-width:100%">',
                                 format="html")
        if study.status == "ok":
            prov = nodes.paragraph(classes=["umlip-provenance"])
            prov += nodes.Text(f"Provenance: {_provenance_text(study.headline)}; command ")
            prov += nodes.literal(text=study.headline.command() or "not recorded")
            section += prov
        if study.variants:
            items = nodes.bullet_list()
            for variant in study.variants:
                items += self._variant(root, variant)
            caption = f"{len(study.variants)} variant{'s' if len(study.variants) > 1 else ''}"
            if len(study.variants) > COLLAPSE_VARIANTS:
                section += _collapsible(f"{caption}: show the list", [items])
            else:
                section += [nodes.paragraph(text=f"{caption}:"), items]
        return section

    def _variant(self, root: Path, item: ResultFile):
        para = nodes.paragraph()
        para += self._link(root, item.path, item.path.removeprefix(f"{RESULTS_DIR}/"))
        if item.data is None:
            para += nodes.Text(f": unreadable ({item.error})")
        else:
            command = item.command()
            if command:
                para += nodes.Text(": ")
                para += nodes.literal(text=command)
            numbers = key_numbers(item.script, item.data)
            model = item.provenance.get("model")
            model = model.get("name") if isinstance(model, dict) else model
            bits = [f"profile {item.profile()}" if item.profile() and not command else "",
                    f"model {model}" if model and not command else "",
                    *(f"{k} {v}" for k, v in numbers),
                    str(item.provenance.get("created_utc", ""))[:10]]
            text = "; ".join(b for b in bits if b)
            if text:
                para += nodes.Text((", " if command else ": ") + text)
        entry = nodes.list_item()
        entry += para
        return entry



def _results_directive():
    from sphinx.util.docutils import SphinxDirective

    return type("BenchmarkResults", (_BenchmarkResults, SphinxDirective), {})


def _model_table_directive():
    from sphinx.util.docutils import SphinxDirective

    class ModelTable(SphinxDirective):
        """The model registry: name, family, checkpoint file, training data, DOI."""

        def run(self):
            from ..models.registry import MODELS

            rows = [[s.name, s.family, s.weights_file or "ships with the package", s.training_data, s.doi]
                    for s in MODELS.values()]
            return [_docutils_table(["name", "family", "checkpoint file", "training data", "DOI"], rows)]

    return ModelTable


def _results_always_outdated(app, env, added, changed, removed):
    return [RESULTS_DOC] if RESULTS_DOC in env.found_docs else []


def setup(app):
    """Sphinx extension entry point (listed in _config.yml under sphinx.extra_extensions)."""
    app.add_config_value("umlip_results_root", None, "env")  # the checkout holding benchmarks/ (default: srcdir)
    app.add_directive("umlip-benchmark-results", _results_directive())
    app.add_directive("umlip-model-table", _model_table_directive())
    app.connect("env-get-outdated", _results_always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
