"""What any press kept, and what its merged tokens cover: one picture for every method.

Works from the :class:`prunesid.Compression` of any press, with the conventions of the other
overlays (hatched: cut away by the crop; grey: LLaVA-NeXT padding; base view and tile mosaic
side by side):

- kept patches at full brightness with a yellow outline;
- patches merged into a new token tinted with that token's colour, one colour per merged
  token, the token it was built on (its anchor, where the press declares one) outlined in white;
- every other patch dimmed: the language model never sees it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from prunesid.compression import Compression
from prunesid.geometry import PatchGrid
from prunesid.methods.registry import drawn_anchors
from viz.canvas import Canvas
from viz.overlay import GAP, KEPT_EDGE, _check, _painted, _side_by_side, canvases
from viz.palette import group_palette

ANCHOR_EDGE = np.array([255, 255, 255], dtype=np.float32)
DROPPED = 0.22  # brightness left to a dropped patch
MERGED_TINT = 0.55  # share of the merged token's colour in a covered patch
LEGEND = (
    "Kept: yellow outline, full brightness. Merged into a new token: "
    "tinted with that token's colour, its anchor outlined in white. Dropped: dimmed."
)


def merged_palette(compression: Compression) -> np.ndarray:
    """One colour per merged token index (the same index has the same colour in every view)."""
    count = 0 if compression.merged is None else max((int(m.shape[0]) for m in compression.merged), default=0)
    return group_palette(max(count, 1))


def render_compression(image: Image.Image, compression: Compression, grids: list[PatchGrid], panels=None) -> Image.Image:
    """Kept patches, merged tokens' coverage and dropped patches of one image's result."""
    _check(compression, grids)
    kept = compression.kept.cpu().numpy()
    covered_by = (
        compression.merged_from.cpu().numpy() if compression.merged_from is not None else np.full(kept.shape, -1, dtype=np.int64)
    )
    marked = drawn_anchors(compression)  # as the press declares them (Diagnostics.anchors)
    anchors = marked.cpu().numpy() if marked is not None else np.zeros(kept.shape, dtype=bool)
    excluded = ~compression.valid.cpu().numpy()
    colours = merged_palette(compression)

    def paint(canvas: Canvas) -> np.ndarray:
        pixels = canvas.pixels.copy()
        is_kept = canvas.gather(kept[:, :, None], False)[..., 0]
        merged_into = canvas.gather(covered_by[:, :, None], -1)[..., 0]
        is_anchor = canvas.gather(anchors[:, :, None], False)[..., 0]
        is_excluded = canvas.gather(excluded[:, :, None], False)[..., 0]
        inside = canvas.view >= 0
        merged = merged_into >= 0
        dropped = inside & ~is_kept & ~merged & ~is_excluded
        pixels[dropped] *= DROPPED
        pixels[merged] = (1 - MERGED_TINT) * pixels[merged] + MERGED_TINT * colours[merged_into[merged]]
        pixels[canvas.edges & is_kept] = KEPT_EDGE
        pixels[canvas.edges & is_anchor] = ANCHOR_EDGE
        return pixels

    return _painted(image, grids, paint, panels)


def caption(name: str, compression: Compression) -> str:
    """``"name: 53 kept + 10 merged (+ CLS)"``."""
    kept = sum(int(index.numel()) for index in compression.indices)
    merged = 0 if compression.merged is None else sum(int(m.shape[0]) for m in compression.merged)
    text = f"{name}: {kept} kept" + (f" + {merged} merged" if merged else "")
    return text + (" + CLS" if compression.reserved else "")


def compare_compressions(
    image: Image.Image, results: dict[str, Compression], grids: list[PatchGrid], per_row: int | None = None
) -> Image.Image:
    """Several methods' results on the same image, side by side (``per_row`` to a row, all
    in one row by default), captioned with their counts."""
    if not results:
        raise ValueError("compare_compressions needs at least one result")
    if per_row is not None and per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    shared = canvases(image, grids)
    panels = [(caption(name, result), render_compression(image, result, grids, shared)) for name, result in results.items()]
    per_row = per_row or len(panels)
    rows = [_side_by_side(panels[start:start + per_row]) for start in range(0, len(panels), per_row)]
    sheet = Image.new("RGB", (max(row.width for row in rows), sum(row.height for row in rows) + GAP * (len(rows) - 1)), (255, 255, 255))
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + GAP
    return sheet
