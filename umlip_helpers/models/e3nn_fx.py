"""Cheaper second derivatives through e3nn's generated code, with identical numbers.

e3nn's ``TensorProduct`` and ``o3.Linear`` run torch.fx code that cuts inputs and weights into irrep blocks with
one slice per block and joins the outputs with ``torch.cat``. Training a force field differentiates twice
(forces, then the loss), and there every slice costs a zero-filled tensor of the whole input's size
(``slice_backward``), as does every block of the cat (its backward slices). With ~15 blocks per tensor product
on (edges x 960) weights and (edges x 3136) messages, these zero fills were ~40% of a SevenNet-0 training step on
CPU. :func:`fuse_block_slices` rewrites the graphs so that the blocks come from one ``split`` (backward: one cat)
and the cat's backward is a ``split`` (backward: one cat). Forward values and gradients are unchanged.
"""

from __future__ import annotations

import operator
from collections import defaultdict

import torch
from torch import fx


class _CatSplitBackward(torch.autograd.Function):
    """``torch.cat`` whose backward is one ``split`` (differentiable again: its own backward is one cat)."""

    @staticmethod
    def forward(ctx, dim: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.dim, ctx.sizes = dim, [t.shape[dim] for t in tensors]
        return torch.cat(tensors, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *torch.split(grad, ctx.sizes, ctx.dim))


def cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    return _CatSplitBackward.apply(dim, *tensors)


def _block(node: fx.Node) -> tuple[fx.Node, int, int, int] | None:
    """(source, dim, start, stop) when ``node`` cuts one contiguous block out of one dimension of ``source``."""
    if node.op == "call_function" and node.target is operator.getitem and len(node.args) == 2:
        source, index = node.args
        if (isinstance(source, fx.Node) and isinstance(index, tuple) and len(index) == 2
                and index[0] == slice(None) and isinstance(index[1], slice) and index[1].step is None
                and isinstance(index[1].start, (int, type(None))) and isinstance(index[1].stop, int)):
            return source, 1, index[1].start or 0, index[1].stop
    if node.op == "call_method" and node.target == "narrow" and len(node.args) == 4 and not node.kwargs:
        source, dim, start, length = node.args
        if isinstance(source, fx.Node) and all(isinstance(v, int) for v in (dim, start, length)):
            return source, dim, start, start + length
    return None


def _written(node: fx.Node) -> bool:
    return any(user.op == "call_method" and user.target.endswith("_") and user.args[0] is node
               for user in node.users)


def _fuse_graph(graph: fx.Graph) -> int:
    groups: dict[tuple[fx.Node, int], list[tuple[fx.Node, int, int]]] = defaultdict(list)
    for node in graph.nodes:
        block = _block(node)
        if block is not None and block[2] >= 0 and block[3] >= block[2]:
            groups[block[:2]].append((node, block[2], block[3]))
    changed = 0
    for (source, dim), blocks in groups.items():
        ordered = sorted(blocks, key=lambda b: b[1])
        if (len(blocks) < 2 or any(a[2] > b[1] for a, b in zip(ordered, ordered[1:]))
                or any(_written(node) for node, _, _ in blocks)):
            continue  # a single block, overlapping blocks, or blocks written in place (split views cannot be)
        sizes, piece_of, position = [], {}, 0
        for node, start, stop in ordered:
            if start > position:
                sizes.append(start - position)  # a gap no block uses
            piece_of[node] = len(sizes)
            sizes.append(stop - start)
            position = stop
        first = min((b[0] for b in blocks), key=lambda n: list(graph.nodes).index(n))
        with graph.inserting_before(first):
            tail = graph.call_function(operator.sub, (graph.call_method("size", (source, dim)), position))
            split = graph.call_function(torch.split, (source, [*sizes, tail], dim))
        for node, _, _ in blocks:
            with graph.inserting_before(node):
                piece = graph.call_function(operator.getitem, (split, piece_of[node]))
            node.replace_all_uses_with(piece)
            graph.erase_node(node)
        changed += len(blocks)
    for node in list(graph.nodes):
        if (node.op == "call_function" and node.target is torch.cat and node.args
                and isinstance(node.args[0], (list, tuple)) and len(node.args[0]) > 1):
            node.target = cat
            changed += 1
    return changed


def fuse_block_slices(module: torch.nn.Module) -> int:
    """Rewrite, in place, every torch.fx graph under ``module`` (e3nn's generated tensor-product and linear code);
    return how many slices and cats were replaced. Idempotent."""
    changed = 0
    for child in module.modules():
        if isinstance(child, fx.GraphModule):
            count = _fuse_graph(child.graph)
            if count:
                child.graph.lint()
                child.recompile()
                changed += count
    return changed
