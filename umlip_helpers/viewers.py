"""Structure and trajectory viewers that work both in a live kernel and in the rendered book.

``view_structure(atoms_or_frames)`` is the one call notebooks need:

* in a live Jupyter kernel it returns an interactive nglview widget (when nglview is installed);
* otherwise, and always while the book is built (``UMLIP_STATIC_VIEWS=1``, which ``python -m umlip_helpers.book``,
  ``umlip sweep`` and the notebook tests set), it returns a :class:`StructureView`: a self-contained HTML canvas
  viewer (drag to rotate, wheel to zoom, a slider for trajectories) that needs no kernel and no network, with a
  PNG rendering (ASE's ``plot_atoms``) for outputs that cannot show HTML.

``plot_structure(atoms, ax=None)`` draws a static matplotlib picture for figures of your own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import uuid
from typing import Literal, Sequence

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.data.colors import jmol_colors

#: Set to 1 to force the static (kernel-free) viewer even in a live kernel.
STATIC_ENV = "UMLIP_STATIC_VIEWS"

Frames = Atoms | Sequence[Atoms]


def _as_frames(atoms_or_frames: Frames) -> list[Atoms]:
    frames = [atoms_or_frames] if isinstance(atoms_or_frames, Atoms) else list(atoms_or_frames)
    if not frames:
        raise ValueError("view_structure: no frames to show")
    for index, frame in enumerate(frames):
        if not isinstance(frame, Atoms):
            raise TypeError(f"view_structure: frame {index} is a {type(frame).__name__}, not ase.Atoms")
        if len(frame) != len(frames[0]):
            raise ValueError(f"view_structure: frame {index} has {len(frame)} atoms, frame 0 has {len(frames[0])}")
    return frames


def _subsample(n_frames: int, max_frames: int) -> list[int]:
    """Indices of at most ``max_frames`` evenly spaced frames, first and last included."""
    if n_frames <= max_frames:
        return list(range(n_frames))
    return np.unique(np.linspace(0, n_frames - 1, max_frames).round().astype(int)).tolist()


def plot_structure(atoms: Atoms, ax=None, rotation: str = "10x,-10y,0z", radii: float = 0.8, show_unit_cell: int = 2):
    """Draw ``atoms`` on a matplotlib axis with ASE's ``plot_atoms`` (Jmol colours); return the axis."""
    import matplotlib.pyplot as plt
    from ase.visualize.plot import plot_atoms

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    plot_atoms(atoms, ax, rotation=rotation, radii=radii, show_unit_cell=show_unit_cell)
    ax.set_axis_off()
    ax.set_title(atoms.get_chemical_formula(), fontsize=10)
    return ax


def structure_png(atoms: Atoms, rotation: str = "10x,-10y,0z", size_inches: float = 4.0, dpi: int = 100) -> bytes:
    """PNG bytes of :func:`plot_structure` (no pyplot state is left behind)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size_inches, size_inches), dpi=dpi)
    plot_structure(atoms, fig.add_subplot(), rotation=rotation)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


# A small orthographic sphere renderer on a 2D canvas: depth-sorted, shaded discs; the cell as lines.
_VIEWER_JS = r"""
(function(){
const d = %(data)s, root = document.getElementById("%(id)s");
const cv = root.querySelector("canvas"), ctx = cv.getContext("2d");
const slider = root.querySelector("input"), label = root.querySelector(".umlip-frame");
let R = [[1,0,0],[0,1,0],[0,0,1]], zoom = 1, frame = 0, drag = null;
function rot(ax, ang){const c=Math.cos(ang), s=Math.sin(ang);
  return ax===0 ? [[1,0,0],[0,c,-s],[0,s,c]] : [[c,0,s],[0,1,0],[-s,0,c]];}
function mul(A,B){return A.map(r=>[0,1,2].map(j=>r[0]*B[0][j]+r[1]*B[1][j]+r[2]*B[2][j]));}
R = mul(rot(0,-0.35), rot(1,0.45));
function tf(p, c){const q=[p[0]-c[0],p[1]-c[1],p[2]-c[2]];
  return [0,1,2].map(i=>R[i][0]*q[0]+R[i][1]*q[1]+R[i][2]*q[2]);}
function draw(){
  const P = d.frames[frame], cell = d.cells[frame], W = cv.width, H = cv.height;
  const c = d.center[frame], s = zoom*Math.min(W,H)/d.extent;
  ctx.fillStyle = "#ffffff"; ctx.fillRect(0,0,W,H);
  const X = p => [W/2 + s*p[0], H/2 - s*p[1]];
  if (cell) {
    const corners = [];
    for (let i=0;i<8;i++){const f=[i&1,(i>>1)&1,(i>>2)&1];
      corners.push(tf([0,1,2].map(k=>f[0]*cell[0][k]+f[1]*cell[1][k]+f[2]*cell[2][k]), c));}
    ctx.strokeStyle = "#888"; ctx.lineWidth = 1; ctx.beginPath();
    for (let i=0;i<8;i++) for (const b of [1,2,4]) if (!(i&b)) {
      const a=X(corners[i]), e=X(corners[i|b]); ctx.moveTo(a[0],a[1]); ctx.lineTo(e[0],e[1]);}
    ctx.stroke();
  }
  const T = P.map((p,i)=>[tf(p,c),i]).sort((a,b)=>a[0][2]-b[0][2]);
  for (const [q,i] of T) {
    const xy = X(q), r = Math.max(1.5, s*d.radii[i]), col = d.colors[i];
    const g = ctx.createRadialGradient(xy[0]-r/3, xy[1]-r/3, r/8, xy[0], xy[1], r);
    g.addColorStop(0, "#ffffff"); g.addColorStop(0.35, col); g.addColorStop(1, "#222222");
    ctx.fillStyle = g; ctx.beginPath(); ctx.arc(xy[0], xy[1], r, 0, 2*Math.PI); ctx.fill();
  }
  if (label) label.textContent = d.labels[frame];
  cv.dataset.drawn = String(1 + Number(cv.dataset.drawn || 0));
}
cv.addEventListener("mousedown", e=>{drag=[e.clientX,e.clientY];});
window.addEventListener("mouseup", ()=>{drag=null;});
window.addEventListener("mousemove", e=>{ if(!drag) return;
  const dx=e.clientX-drag[0], dy=e.clientY-drag[1]; drag=[e.clientX,e.clientY];
  R = mul(rot(1,dx*0.01), mul(rot(0,dy*0.01), R)); draw();});
cv.addEventListener("wheel", e=>{e.preventDefault(); zoom *= e.deltaY<0 ? 1.1 : 1/1.1; draw();}, {passive:false});
if (slider) slider.addEventListener("input", ()=>{frame = Number(slider.value); draw();});
draw();
})();
"""


class StructureView:
    """A kernel-free view of one structure or a trajectory: HTML canvas in the book, PNG elsewhere."""

    def __init__(self, frames: list[Atoms], labels: list[str], width: int, height: int, title: str | None):
        self.frames, self.labels = frames, labels
        self.width, self.height, self.title = width, height, title

    def _payload(self) -> dict:
        first = self.frames[0]
        numbers = first.numbers
        positions = [np.round(f.positions, 3).tolist() for f in self.frames]
        cells = [np.round(f.cell.array, 3).tolist() if f.cell.rank == 3 else None for f in self.frames]
        centers = []
        for frame in self.frames:
            centre = frame.cell.array.sum(axis=0) / 2 if frame.cell.rank == 3 else frame.positions.mean(axis=0)
            centers.append(np.round(centre, 3).tolist())
        spans = [np.ptp(f.positions, axis=0).max() for f in self.frames]
        if first.cell.rank == 3:
            spans.append(np.linalg.norm(first.cell.array.sum(axis=0)))
        return {
            "frames": positions, "cells": cells, "center": centers, "labels": self.labels,
            "radii": np.round(covalent_radii[numbers] * 0.8, 3).tolist(),
            "colors": ["#%02x%02x%02x" % tuple(int(255 * c) for c in jmol_colors[z]) for z in numbers],
            "extent": float(max(spans) + 2.0),
        }

    def _repr_html_(self) -> str:
        view_id = f"umlip-view-{uuid.uuid4().hex[:12]}"
        title = html.escape(self.title or self.frames[0].get_chemical_formula())
        slider = ""
        if len(self.frames) > 1:
            slider = (f'<div><input type="range" min="0" max="{len(self.frames) - 1}" value="0" step="1" '
                      f'style="width:{self.width - 120}px" aria-label="frame"> '
                      f'<span class="umlip-frame"></span></div>')
        data = json.dumps(self._payload(), separators=(",", ":"))
        script = _VIEWER_JS % {"data": data, "id": view_id}
        return (f'<div class="umlip-structure-view" id="{view_id}" style="font-family:sans-serif;font-size:13px">'
                f'<div><b>{title}</b> &mdash; {len(self.frames[0])} atoms'
                f'{f", {len(self.frames)} frames" if len(self.frames) > 1 else ""}; drag to rotate, wheel to zoom</div>'
                f'<canvas width="{self.width}" height="{self.height}" style="border:1px solid #ddd"></canvas>'
                f'{slider}<script>{script}</script></div>')

    def _repr_png_(self) -> bytes:
        return structure_png(self.frames[0])

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self._repr_html_(), "image/png": self._repr_png_(),
                "text/plain": repr(self)}

    def __repr__(self) -> str:
        return (f"<StructureView {self.frames[0].get_chemical_formula()}: {len(self.frames[0])} atoms, "
                f"{len(self.frames)} frame(s)>")

    def png_data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self._repr_png_()).decode()


def _live_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def view_structure(
    atoms_or_frames: Frames,
    *,
    interactive: Literal["auto", "yes", "no"] = "auto",
    max_frames: int = 100,
    width: int = 480,
    height: int = 360,
    title: str | None = None,
):
    """Show a structure, or a trajectory (a list of Atoms with equal atom counts).

    interactive: "auto" gives the nglview widget in a live kernel when nglview is installed and
    ``$UMLIP_STATIC_VIEWS`` is unset, else the static :class:`StructureView`; "yes" demands the widget;
    "no" always gives the static view. Trajectories are thinned to ``max_frames`` evenly spaced frames.
    Put the call last in a cell (or pass it to ``IPython.display.display``).
    """
    frames = _as_frames(atoms_or_frames)
    if interactive not in ("auto", "yes", "no"):
        raise ValueError(f"interactive must be 'auto', 'yes' or 'no', not {interactive!r}")
    want_widget = interactive == "yes" or (
        interactive == "auto" and _live_kernel() and os.environ.get(STATIC_ENV, "") in ("", "0"))
    if want_widget:
        try:
            import nglview
        except ImportError:
            if interactive == "yes":
                raise
        else:
            return nglview.show_ase(frames[0]) if len(frames) == 1 else nglview.show_asetraj(frames)
    indices = _subsample(len(frames), max_frames)
    labels = [f"frame {i + 1} / {len(frames)}" for i in indices]
    return StructureView([frames[i] for i in indices], labels, width, height, title)
