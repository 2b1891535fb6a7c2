"""Build the book: ``python -m umlip_helpers.book --profile ci|full`` (what ``make book`` runs).

* :mod:`.toc`: ``_toc.yml`` generated from ``notebooks/*.ipynb`` and checked against the files present;
* :mod:`.execution`: the notebooks executed with papermill (``ci`` through the book's jupyter-cache, ``full`` into
  staged copies) and ``jupyter-book build``;
* :mod:`.studies` and :mod:`.result_tables`: ``benchmarks/results/`` gathered by study and rendered as tables;
* :mod:`.sphinx_ext`: the Sphinx extension with the ``{umlip-benchmark-results}`` and ``{umlip-model-table}``
  directives;
* :mod:`.headlines`: a study's committed headline, for a notebook's summary;
* ``__main__``: the command line.
"""

from .execution import (CACHE_DIR, FINGERPRINT_FILE, Execution, NotebookExecutionError, Profile, build,
                        effective_config, execute_all_ci, execute_all_full, execute_notebook, fingerprint,
                        kernel_environment, open_cache, static_outputs)
from .sphinx_ext import RESULTS_DOC
from .studies import BenchmarkTable, benchmark_tables
from .toc import PARTS, ROOT_PAGE, notebook_files, render_toc, toc_entries, toc_notebooks, toc_problems

__all__ = ["CACHE_DIR", "FINGERPRINT_FILE", "PARTS", "RESULTS_DOC", "ROOT_PAGE", "BenchmarkTable", "Execution",
           "NotebookExecutionError", "Profile", "benchmark_tables", "build", "effective_config", "execute_all_ci",
           "execute_all_full", "execute_notebook", "fingerprint", "kernel_environment", "notebook_files",
           "open_cache", "render_toc", "static_outputs", "toc_entries", "toc_notebooks", "toc_problems"]
