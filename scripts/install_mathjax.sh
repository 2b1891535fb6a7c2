#!/usr/bin/env bash
# MathJax 3 for the book's equations, served with the HTML instead of from a CDN, so that the book reads offline.
# Downloads the mathjax package from the npm registry once (6 MB, sha512-checked; no node, npm or root needed),
# and keeps the parts the pages load (about 4 MB) in DEST/mathjax; _config.yml lists DEST in html_static_path and
# points mathjax_path at mathjax/tex-mml-chtml.js. Idempotent: with this version in place it does nothing.
# Usage: install_mathjax.sh [DEST]   (default .venv/share/book-static)
set -euo pipefail
version=3.2.2
sha512=06df9249553c7811b6ef30a155ec0e89c62ced7b1db78d2a9b8f94a47c97ee4d3f3bd36588f73ec7bee4d7f144b0fb2328f64626fb5164cd6f3be81e5b43a11b
dest=${1:-.venv/share/book-static}
[ "$(cat "$dest/mathjax/VERSION" 2>/dev/null)" = "$version" ] && exit 0

url="https://registry.npmjs.org/mathjax/-/mathjax-$version.tgz"
mkdir -p "$dest"
stage=$(mktemp -d "$dest/.mathjax.XXXXXX")
trap 'rm -rf "$stage"' EXIT
if ! curl -fsSL --retry 2 -o "$stage/mathjax.tgz" "$url"; then
    echo "install_mathjax: could not download $url; the book's equations will show as LaTeX until this runs" >&2
    exit 1
fi
echo "$sha512  $stage/mathjax.tgz" | sha512sum --check --quiet
tar -xzf "$stage/mathjax.tgz" -C "$stage"
es5="$stage/package/es5"
mkdir -p "$stage/mathjax/output"
# the combined TeX/MathML-to-HTML component (what Sphinx loads by default), the TeX extensions it loads on demand
# (\boldsymbol, \ce, ...), its menu and accessibility parts, and the HTML output's fonts
cp -r "$es5/tex-mml-chtml.js" "$es5/input" "$es5/ui" "$es5/a11y" "$stage/mathjax/"
cp -r "$es5/output/chtml" "$stage/mathjax/output/"
cp "$stage/package/LICENSE" "$stage/mathjax/"
echo "$version" > "$stage/mathjax/VERSION"
rm -rf "$dest/mathjax"
mv "$stage/mathjax" "$dest/mathjax"
echo "installed: MathJax $version in $dest/mathjax"
