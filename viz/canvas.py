"""Raster bookkeeping: which patch of which view every drawn pixel belongs to.

Drawing is then a lookup (a colour per patch, gathered per pixel) instead of one rectangle
call per patch, which keeps a full re-render in a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from prunesid.geometry import PatchGrid

LONG_SIDE = 768  # drawing resolution: enough to see 24 x 24 patches, fast to encode
SHORT_SIDE_MIN = 240  # tiny uploads are enlarged so patches stay visible
# No canvas side is ever longer, whatever the input's shape (a 16 x 2000 strip enlarged to a
# 240 px short side would be 30000 px long).
MAX_CANVAS_SIDE = 1536
PADDING_GREY = np.array([92, 92, 96], dtype=np.float32)


@dataclass
class Canvas:
    """One panel: the image (scaled) on a canvas that also holds any padded area."""

    pixels: np.ndarray  # [H, W, 3] float32, the image with padding drawn grey
    view: np.ndarray  # [H, W] int: view index of the pixel's patch, -1 outside every grid
    patch: np.ndarray  # [H, W] int: patch index within that view, -1 outside
    on_image: np.ndarray  # [H, W] bool: pixel lies on the original image
    edges: np.ndarray  # [H, W] bool: pixel sits on a patch border

    def patch_at(self, x: int, y: int) -> tuple[int, int] | None:
        """``(view, patch)`` drawn at pixel (x, y) of this canvas, None off every grid."""
        if not (0 <= y < self.view.shape[0] and 0 <= x < self.view.shape[1]) or self.view[y, x] < 0:
            return None
        return int(self.view[y, x]), int(self.patch[y, x])

    def gather(self, per_patch: np.ndarray, default) -> np.ndarray:
        """Per-pixel values from a ``[V, T, ...]`` per-patch table (``default`` off-grid)."""
        inside = self.view >= 0
        out = np.empty(self.view.shape + per_patch.shape[2:], dtype=per_patch.dtype)
        out[...] = default
        out[inside] = per_patch[self.view[inside], self.patch[inside]]
        return out


def drawing_scale(image_size: tuple[int, int]) -> float:
    """Long side down to ``LONG_SIDE``; a short side under ``SHORT_SIDE_MIN`` enlarged, as
    far as the long side stays within ``MAX_CANVAS_SIDE``."""
    width, height = image_size
    scale = min(1.0, LONG_SIDE / max(width, height))
    if min(width, height) * scale < SHORT_SIDE_MIN:
        scale = max(scale, min(SHORT_SIDE_MIN / min(width, height), MAX_CANVAS_SIDE / max(width, height)))
    return scale


def build_canvas(image: Image.Image, grids: list[PatchGrid], views: list[int]) -> Canvas:
    """Rasterise ``views`` (indices into ``grids``) over ``image`` at the drawing scale."""
    scale = drawing_scale(image.size)
    width, height = image.size
    boxes = np.array([grids[v].box for v in views], dtype=np.float64)
    # Padded tiles may reach past the image: the canvas holds both, within MAX_CANVAS_SIDE.
    extent = max(
        max(width, boxes[:, 2].max()) - min(0.0, boxes[:, 0].min()),
        max(height, boxes[:, 3].max()) - min(0.0, boxes[:, 1].min()),
    )
    scale = min(scale, MAX_CANVAS_SIDE / extent)
    boxes = boxes * scale
    left = min(0.0, boxes[:, 0].min())
    top = min(0.0, boxes[:, 1].min())
    right = max(width * scale, boxes[:, 2].max())
    bottom = max(height * scale, boxes[:, 3].max())
    canvas_w, canvas_h = int(round(right - left)), int(round(bottom - top))
    offset_x, offset_y = int(round(-left)), int(round(-top))

    scaled = image.convert("RGB").resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
    pixels = np.empty((canvas_h, canvas_w, 3), dtype=np.float32)
    pixels[...] = PADDING_GREY
    sw, sh = scaled.size
    sw, sh = min(sw, canvas_w - offset_x), min(sh, canvas_h - offset_y)
    pixels[offset_y:offset_y + sh, offset_x:offset_x + sw] = np.asarray(scaled, dtype=np.float32)[:sh, :sw]
    on_image = np.zeros((canvas_h, canvas_w), dtype=bool)
    on_image[offset_y:offset_y + sh, offset_x:offset_x + sw] = True

    view_map = np.full((canvas_h, canvas_w), -1, dtype=np.int64)
    patch_map = np.full((canvas_h, canvas_w), -1, dtype=np.int64)
    xs = np.arange(canvas_w) + 0.5 - offset_x
    ys = np.arange(canvas_h) + 0.5 - offset_y
    for view, box in zip(views, boxes):
        grid = grids[view]
        col = np.floor((xs - box[0]) / (box[2] - box[0]) * grid.cols).astype(np.int64)
        row = np.floor((ys - box[1]) / (box[3] - box[1]) * grid.rows).astype(np.int64)
        col_ok, row_ok = (col >= 0) & (col < grid.cols), (row >= 0) & (row < grid.rows)
        inside = row_ok[:, None] & col_ok[None, :]
        view_map[inside] = view
        patch_map[inside] = (row[:, None] * grid.cols + col[None, :])[inside]

    key = view_map * 1_000_000 + patch_map
    edges = np.zeros_like(on_image)
    edges[:, 1:] |= key[:, 1:] != key[:, :-1]
    edges[1:, :] |= key[1:, :] != key[:-1, :]
    return Canvas(pixels, view_map, patch_map, on_image, edges)
