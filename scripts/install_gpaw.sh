#!/usr/bin/env bash
# Install GPAW (PBE plane-wave DFT, a live parent calculator for 1-8 atom cells) into a venv.
# Usage: scripts/install_gpaw.sh [VENV]   (default .venv). Idempotent: does nothing if gpaw already imports.
# Needs apt (Debian/Ubuntu) for libxc, OpenBLAS and FFTW headers, so root or sudo: without either (and without the
# headers) it says so in one line and skips; the tests that need GPAW then skip too.
set -euo pipefail

GPAW_VERSION=26.7.0
VENV=${1:-.venv}
PY="$VENV/bin/python"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1  # 2 BLAS threads ran 10-18x slower on 2 shared cores

if [ ! -x "$PY" ]; then
    echo "install_gpaw.sh: no Python at $PY; create the venv first (make setup)" >&2
    exit 1
fi
if "$PY" -c "import gpaw, sys; sys.exit(gpaw.__version__ != '$GPAW_VERSION')" 2>/dev/null; then
    echo "gpaw $GPAW_VERSION is already installed in $VENV"
    exit 0
fi

SUDO=""
missing=()
for pkg in libxc-dev libopenblas-dev libfftw3-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
        echo "install_gpaw.sh: skipped: GPAW needs ${missing[*]}, and apt-get needs root or sudo; the GPAW tests will skip"
        exit 0
    fi
fi

# GPAW must not move torch: check the resolver's plan before installing anything.
plan=$("$PY" -m pip install --dry-run --no-cache-dir "gpaw==$GPAW_VERSION" 2>&1)
if grep -E "^Would install" <<<"$plan" | grep -qiE "(^| )(torch|numpy|scipy|ase)-"; then
    echo "install_gpaw.sh: refusing, pip would change core packages:" >&2
    grep -E "^Would install" <<<"$plan" >&2
    exit 1
fi
grep -E "^Would install" <<<"$plan" || true

if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

siteconfig=$(mktemp --suffix=_gpaw_siteconfig.py)
trap 'rm -f "$siteconfig"' EXIT
cat > "$siteconfig" <<'PYCONF'
compiler = 'g++'
mpi = False
fftw = True
libraries += ['fftw3', 'blas']
PYCONF

# gpaw-data (PAW setups incl. PBE) comes in as a declared dependency of gpaw.
GPAW_CONFIG="$siteconfig" "$PY" -m pip install --no-cache-dir "gpaw==$GPAW_VERSION"
"$PY" -c "import gpaw; from gpaw.setup_data import search_for_file; search_for_file('Ni.PBE'); print('gpaw', gpaw.__version__, 'with PBE setups: ok')"
