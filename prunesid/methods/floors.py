"""The honest floors: random tokens and an even spatial grid of tokens.

Any method worth its computation should beat both at the same budget. Neither looks at the
tokens' content; both keep the kept tokens in position order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from prunesid.methods.base import PressInfo, VisionTokens
from prunesid.methods.common import PerViewPress, Views, positions
from prunesid.methods.registry import register_press
from prunesid.options import option


@register_press("random")
@dataclass(frozen=True)
class RandomPrune(PerViewPress):
    """Random pruning: each view keeps ``budget`` tokens drawn uniformly at random, without
    replacement, from its selectable tokens (the floor every pruning paper reports, e.g. the
    random baseline of the PruneSID and DivPrune papers).
    """

    seed: int = option(
        0, "seed of the draw; each view draws from its own generator seeded with it, so an image gets the same "
        "tokens alone or in a batch", minimum=0,
    )

    info: ClassVar[PressInfo] = PressInfo(
        label="random", paper="", summary="random tokens (floor)", order=90,
    )

    def keep_view(self, views: Views, view: int, count: int) -> torch.Tensor:
        candidates = views.candidates(view)
        generator = torch.Generator().manual_seed(self.seed)
        draw = torch.randperm(candidates.numel(), generator=generator)[:count].to(candidates.device)
        return candidates[draw].sort().values


@register_press("uniform")
@dataclass(frozen=True)
class UniformPrune(PerViewPress):
    """Uniform pruning: each view keeps ``budget`` tokens on an even spatial lattice over its
    patch grid (``VisionTokens.grid_shapes``), the spatial floor (like the "uniform" /
    pooling baselines of token-reduction papers, without averaging anything).

    The lattice has ``a`` rows and ``b`` columns, ``a * b >= k`` with ``a / b`` close to the
    selectable area's aspect ratio, each point at the centre of its cell; when ``a * b > k``
    every ``a * b / k``-th point (row by row) is kept. It covers the bounding box of the view's
    selectable tokens (LLaVA-NeXT: the unpadded part of a tile); a point on a token that may
    not be kept moves to the nearest one that may.

    Tokens given without ``grid_shapes`` are taken as a square grid when T is a square
    number; otherwise the press raises ValueError.
    """

    info: ClassVar[PressInfo] = PressInfo(
        label="uniform", paper="", summary="an even spatial grid (floor)", uses=("patch_grid",), order=91,
    )

    def keep_view(self, views: Views, view: int, count: int) -> torch.Tensor:
        rows, cols = _grid_shape(views.tokens, view)
        return lattice(views.valid[view], rows, cols, count)


def _grid_shape(tokens: VisionTokens, view: int) -> tuple[int, int]:
    length = tokens.features.shape[1]
    if tokens.grid_shapes is None:
        side = math.isqrt(length)
        if side * side != length:
            raise ValueError(
                f"UniformPrune needs the views' patch grids (VisionTokens.grid_shapes): {length} tokens are not a square grid"
            )
        return side, side
    rows, cols = (int(n) for n in tokens.grid_shapes[view])
    if rows < 1 or cols < 1 or rows * cols > length:
        raise ValueError(f"grid_shapes[{view}] = ({rows}, {cols}) does not fit a view of {length} tokens")
    return rows, cols


def lattice(valid_row: torch.Tensor, rows: int, cols: int, count: int) -> torch.Tensor:
    """``count`` token indices evenly spread over the selectable tokens of a ``rows x cols``
    grid (row-major), ascending."""
    candidates = positions(valid_row)
    if count >= candidates.numel():
        return candidates
    if int(candidates.max()) >= rows * cols:
        raise ValueError(f"selectable tokens lie beyond the {rows} x {cols} patch grid of the view")
    cand_rows, cand_cols = candidates // cols, candidates % cols
    top, left = int(cand_rows.min()), int(cand_cols.min())
    height, width = int(cand_rows.max()) - top + 1, int(cand_cols.max()) - left + 1
    # a x b lattice with a * b >= count, a <= height, b <= width (count <= height * width).
    a = min(height, max(1, round(math.sqrt(count * height / width))))
    b = math.ceil(count / a)
    if b > width:
        b = width
        a = math.ceil(count / width)
    lattice_rows = [top + math.floor((i + 0.5) * height / a) for i in range(a)]
    lattice_cols = [left + math.floor((j + 0.5) * width / b) for j in range(b)]
    points = [(r, c) for r in lattice_rows for c in lattice_cols]
    chosen_points = [points[(j * len(points)) // count] for j in range(count)]

    allowed = valid_row.cpu()
    taken: list[int] = []
    misses: list[tuple[int, int]] = []
    for r, c in chosen_points:
        index = r * cols + c
        if bool(allowed[index]):
            taken.append(index)
        else:
            misses.append((r, c))
    if misses:  # a lattice point on a token that may not be kept: the nearest free one that may
        free = allowed[: rows * cols].clone()
        free[taken] = False
        grid_rows = torch.arange(rows * cols) // cols
        grid_cols = torch.arange(rows * cols) % cols
        for r, c in misses:
            distance = ((grid_rows - r) ** 2 + (grid_cols - c) ** 2).float()
            distance[~free] = float("inf")
            nearest = int(torch.argmin(distance))  # ties: the lowest index
            taken.append(nearest)
            free[nearest] = False
    return torch.tensor(sorted(taken), dtype=torch.long, device=valid_row.device)
