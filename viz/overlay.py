"""The three layers of a selection (groups, NMS survivors, kept patches) and comparisons.

Conventions, the same on every layer:
- the area of the image no view covers (the processor's center crop cut it away) is
  darkened and hatched: the model never saw it;
- a view's area beyond the image (LLaVA-NeXT letterbox padding) is drawn grey; its patches
  take no part in the selection (group -1) and carry no group colour or survivor mark;
- with several views (LLaVA-NeXT) the base view and the tile mosaic are drawn side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prunesid.geometry import PatchGrid
from prunesid.selection import Selection
from viz.canvas import Canvas, build_canvas
from viz.palette import selection_palette

GAP = 8
CAPTION_HEIGHT = 34
CAPTION_FONT = ImageFont.load_default(size=22)  # >= 11 px on a sheet shown at half its size
KEPT_EDGE = np.array([255, 214, 0], dtype=np.float32)
SURVIVOR_EDGE = np.array([40, 220, 90], dtype=np.float32)
SUPPRESSED_TINT = np.array([200, 40, 40], dtype=np.float32)


def _check(selection: Selection, grids: list[PatchGrid]) -> None:
    if len(grids) != selection.num_views:
        raise ValueError(f"got {len(grids)} patch grids for a selection of {selection.num_views} views")
    for grid in grids:
        if grid.num_patches != selection.tokens_per_view:
            raise ValueError(
                f"grid {grid.label!r} has {grid.rows} x {grid.cols} = {grid.num_patches} patches "
                f"but the selection has {selection.tokens_per_view} tokens per view"
            )


def _panels(grids: list[PatchGrid]) -> list[tuple[str, list[int]]]:
    """Which views share a panel: one panel for a single view; otherwise the overview (the
    view that sees the most image per patch: LLaVA-NeXT's base view, InternVL's thumbnail,
    Mini-Gemini's global view) on its own and the tiles together, so that no tile's panel
    hatches what the other tiles cover."""
    if len(grids) == 1:
        return [("", [0])]
    overview = overview_view(grids)
    return [(grids[overview].label, [overview]), ("tiles", [view for view in range(len(grids)) if view != overview])]


def overview_view(grids: list[PatchGrid]) -> int:
    """The view covering the most image area per patch (the first of equals)."""
    def area_per_patch(grid: PatchGrid) -> float:
        x0, y0, x1, y1 = grid.box
        return (x1 - x0) * (y1 - y0) / grid.num_patches

    return max(range(len(grids)), key=lambda view: (area_per_patch(grids[view]), -view))


def _mark_margin(canvas: Canvas, pixels: np.ndarray) -> None:
    """Darken and hatch what the image shows but no view covers."""
    margin = canvas.on_image & (canvas.view < 0)
    if not margin.any():
        return
    rows, cols = np.nonzero(margin)
    pixels[rows, cols] *= 0.35
    hatch = (rows + cols) % 12 < 2
    pixels[rows[hatch], cols[hatch]] = 200.0


def canvases(image: Image.Image, grids: list[PatchGrid]) -> list[tuple[str, Canvas]]:
    """The rasterised panels of an image; build once and pass to several layers."""
    return [(caption, build_canvas(image, grids, views)) for caption, views in _panels(grids)]


def _draw(image, selection, grids, paint, panels=None) -> Image.Image:
    _check(selection, grids)
    return _painted(image, grids, paint, panels)


def _painted(image, grids, paint, panels=None) -> Image.Image:
    """Every panel as ``paint`` draws it, the margin no view covers hatched, side by side."""
    rendered = []
    for caption, canvas in panels or canvases(image, grids):
        pixels = paint(canvas)
        _mark_margin(canvas, pixels)
        rendered.append((caption, Image.fromarray(pixels.clip(0, 255).astype(np.uint8))))
    return _side_by_side(rendered)


def _side_by_side(panels: list[tuple[str, Image.Image]]) -> Image.Image:
    if len(panels) == 1 and not panels[0][0]:
        return panels[0][1]
    caption_band = CAPTION_HEIGHT
    width = sum(panel.width for _, panel in panels) + GAP * (len(panels) - 1)
    height = max(panel.height for _, panel in panels) + caption_band
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for caption, panel in panels:
        # Centred: the app draws its own label over an image's top-left corner.
        draw.text((x + panel.width / 2, CAPTION_HEIGHT / 2), caption, fill=(20, 20, 20), font=CAPTION_FONT, anchor="mm")
        sheet.paste(panel, (x, caption_band))
        x += panel.width + GAP
    return sheet


def render_groups(image: Image.Image, selection: Selection, grids: list[PatchGrid], panels=None) -> Image.Image:
    """Every patch tinted with its group's colour; borders where the group changes."""
    groups = selection.groups.cpu().numpy()
    colours = selection_palette(selection)

    def paint(canvas: Canvas) -> np.ndarray:
        pixels = canvas.pixels.copy()
        group_map = canvas.gather(groups[:, :, None], -1)[..., 0]
        inside = group_map >= 0
        pixels[inside] = 0.45 * pixels[inside] + 0.55 * colours[group_map[inside]]
        border = np.zeros_like(inside)
        border[:, 1:] |= group_map[:, 1:] != group_map[:, :-1]
        border[1:, :] |= group_map[1:, :] != group_map[:-1, :]
        pixels[border & inside] = 20.0
        return pixels

    return _draw(image, selection, grids, paint, panels)


def render_survivors(image: Image.Image, selection: Selection, grids: list[PatchGrid], panels=None) -> Image.Image:
    """NMS survivors outlined in green on the image; suppressed patches dimmed and tinted red."""
    # 1 survivor, 0 suppressed, -1 took no part (off-grid, or excluded such as NeXT padding)
    states = np.where(selection.groups.cpu().numpy() < 0, -1, selection.survivors.cpu().numpy().astype(np.int8))

    def paint(canvas: Canvas) -> np.ndarray:
        pixels = canvas.pixels.copy()
        state = canvas.gather(states[:, :, None].astype(np.int8), -1)[..., 0]
        suppressed = state == 0
        pixels[suppressed] = 0.45 * pixels[suppressed] + 0.25 * SUPPRESSED_TINT
        pixels[canvas.edges & (state == 1)] = SURVIVOR_EDGE
        return pixels

    return _draw(image, selection, grids, paint, panels)


def render_kept(image: Image.Image, selection: Selection, grids: list[PatchGrid], panels=None) -> Image.Image:
    """Kept patches at full brightness with a yellow outline; every other patch dimmed."""
    kept = selection.kept.cpu().numpy()

    def paint(canvas: Canvas) -> np.ndarray:
        pixels = canvas.pixels.copy()
        state = canvas.gather(kept[:, :, None].astype(np.int8), -1)[..., 0]
        dropped = state == 0
        pixels[dropped] *= 0.22
        pixels[canvas.edges & (state == 1)] = KEPT_EDGE
        return pixels

    return _draw(image, selection, grids, paint, panels)


LAYERS = {"groups": render_groups, "survivors": render_survivors, "kept": render_kept}


def render_all(image: Image.Image, selection: Selection, grids: list[PatchGrid]) -> dict[str, Image.Image]:
    """All three layers: ``{"groups", "survivors", "kept"}``."""
    _check(selection, grids)
    panels = canvases(image, grids)
    return {name: render(image, selection, grids, panels) for name, render in LAYERS.items()}


def compare(image: Image.Image, selections: dict[str, Selection], grids: list[PatchGrid], layer: str = "kept") -> Image.Image:
    """One layer for several selections of the same image, side by side with captions."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")
    if not selections:
        raise ValueError("compare needs at least one selection")
    shared = canvases(image, grids)
    panels = []
    for name, selection in selections.items():
        kept = sum(int(index.numel()) for index in selection.indices)
        panels.append((f"{name}: {kept} kept, rho {float(selection.rho[0]):.3f}", LAYERS[layer](image, selection, grids, shared)))
    return _side_by_side(panels)


def save_panel(images: dict[str, Image.Image], path) -> Path:
    """Write layers (e.g. from :func:`render_all`) side by side, captioned, into one PNG."""
    path = Path(path)
    _side_by_side(list(images.items())).save(path)
    return path
