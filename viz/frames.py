"""Pictures of a video's per-frame selection: a strip of frames with one overlay layer each,
and a per-frame chart of rho, phi and the budget N' each frame got.

A video's :class:`prunesid.Selection` has one view per frame; frame f is drawn with view f
of the selection on its own grid, with the same layers as an image (viz/overlay.py). Knows
nothing of models; returns PIL images.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from prunesid.geometry import PatchGrid
from prunesid.selection import Selection
from viz.overlay import LAYERS, canvases

TILE_WIDTH = 320  # each frame's overlay in the strip, scaled to this width
TILE_MAX_HEIGHT = 480  # ... or to this height where taller (a narrow frame): every strip's size is bounded
COLUMNS = 4
GAP = 6
CAPTION_HEIGHT = 30  # room for captions that stay >= 11 px when a strip is shown at half its size
FONT = ImageFont.load_default(size=22)
CHART_WIDTH, CHART_HEIGHT = 720, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 48, 34, 40
RHO_COLOUR, PHI_COLOUR = (200, 60, 50), (40, 150, 80)
BAR_COLOUR, CLAMPED_COLOUR = (140, 175, 225), (240, 170, 90)


def _check(frames: list[Image.Image], selection: Selection, grids: list[PatchGrid]) -> None:
    if not frames:
        raise ValueError("a frame strip needs at least one frame")
    if not len(frames) == len(grids) == selection.num_views:
        raise ValueError(
            f"got {len(frames)} frames, {len(grids)} grids and a selection of {selection.num_views} views; one each per frame"
        )


def frames_per_view(frames: list, timestamps: list[float], num_views: int) -> tuple[list, list[float]]:
    """One frame (and its time) per view: each frame, or where a view covers several frames
    (Qwen-VL merges pairs of frames into one temporal group) the first frame of each view."""
    if num_views < 1 or num_views > len(frames):
        raise ValueError(f"got {len(frames)} frames for {num_views} views; a view covers one frame or more")
    step = -(-len(frames) // num_views)
    return frames[::step], timestamps[::step]


def frame_captions(selection: Selection, timestamps: list[float] | None = None) -> list[str]:
    """``"3 · 1.7 s · N' 21"`` per frame (the time where known)."""
    captions = []
    for frame in range(selection.num_views):
        when = f" · {timestamps[frame]:.1f} s" if timestamps is not None else ""
        captions.append(f"{frame + 1}{when} · N' {int(selection.budget[frame])}")
    return captions


def render_frame_strip(
    frames: list[Image.Image], selection: Selection, grids: list[PatchGrid], layer: str = "kept",
    timestamps: list[float] | None = None, columns: int = COLUMNS, panels: list | None = None,
) -> Image.Image:
    """Every frame with ``layer`` ("groups", "survivors" or "kept") of its own selection,
    in clip order, ``columns`` per row, each captioned with its number, time and N'."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")
    _check(frames, selection, grids)
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    panels = panels or frame_canvases(frames, grids)
    tiles = []
    for frame, (image, grid) in enumerate(zip(frames, grids)):
        drawn = LAYERS[layer](image, selection.take(frame, frame + 1), [grid], panels[frame])
        tiles.append(_fit_tile(drawn))
    return _grid(tiles, frame_captions(selection, timestamps), columns)


def _fit_tile(drawn: Image.Image) -> Image.Image:
    """``TILE_WIDTH`` wide, or ``TILE_MAX_HEIGHT`` high where that is the tighter bound."""
    scale = min(TILE_WIDTH / drawn.width, TILE_MAX_HEIGHT / drawn.height)
    size = (max(1, round(drawn.width * scale)), max(1, round(drawn.height * scale)))
    return drawn if size == drawn.size else drawn.resize(size, Image.BILINEAR)


def frame_canvases(frames: list[Image.Image], grids: list[PatchGrid]) -> list:
    """Each frame's rasterised panels, to share between the layers of one strip."""
    return [canvases(image, [grid]) for image, grid in zip(frames, grids)]


def render_frame_layers(frames, selection, grids, timestamps=None, columns: int = COLUMNS) -> dict[str, Image.Image]:
    """The three strips ``{"groups", "survivors", "kept"}``, drawing each frame's canvas once."""
    _check(frames, selection, grids)
    panels = frame_canvases(frames, grids)
    return {layer: render_frame_strip(frames, selection, grids, layer, timestamps, columns, panels) for layer in LAYERS}


def _grid(tiles: list[Image.Image], captions: list[str], columns: int) -> Image.Image:
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    tile_height = max(tile.height for tile in tiles)
    cell_h = CAPTION_HEIGHT + tile_height
    sheet = Image.new("RGB", (columns * TILE_WIDTH + (columns - 1) * GAP, rows * cell_h + (rows - 1) * GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions)):
        row, col = divmod(index, columns)
        x, y = col * (TILE_WIDTH + GAP), row * (cell_h + GAP)
        draw.text((x + TILE_WIDTH / 2, y + CAPTION_HEIGHT / 2), caption, fill=(20, 20, 20), font=FONT, anchor="mm")
        sheet.paste(tile, (x + (TILE_WIDTH - tile.width) // 2, y + CAPTION_HEIGHT))
    return sheet


def render_frame_chart(selection: Selection, timestamps: list[float] | None = None, budget: int | None = None) -> Image.Image:
    """Per frame: N' as a bar (orange where the clamp bit, right axis, the requested N
    dashed), rho and phi as lines (left axis, 0..1)."""
    frames = selection.num_views
    budgets = [int(n) for n in selection.budget.tolist()]
    rho, phi = selection.rho.tolist(), selection.phi.tolist()
    clamped = selection.budget_clamped.tolist()
    image = Image.new("RGB", (CHART_WIDTH, CHART_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, right = MARGIN_LEFT, CHART_WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, CHART_HEIGHT - MARGIN_BOTTOM
    slot = (right - left) / frames
    top_budget = max(max(budgets), budget or 0) * 1.15 or 1

    def y_unit(value: float) -> float:  # rho, phi
        return bottom - (bottom - top) * min(max(value, 0.0), 1.0)

    def y_budget(value: float) -> float:
        return bottom - (bottom - top) * value / top_budget

    draw.line([(left, top), (left, bottom), (right, bottom), (right, top)], fill=(0, 0, 0))
    for value in (0.0, 0.5, 1.0):
        draw.text((left - 6, y_unit(value)), f"{value:.1f}", fill=(60, 60, 60), font=FONT, anchor="rm")
    for value in sorted({0, round(top_budget / 1.15 / 2), max(budgets)}):
        draw.text((right + 6, y_budget(value)), str(value), fill=(60, 60, 60), font=FONT, anchor="lm")
    bar = slot * 0.6
    for frame in range(frames):
        x = left + slot * (frame + 0.5)
        colour = CLAMPED_COLOUR if clamped[frame] else BAR_COLOUR
        draw.rectangle([x - bar / 2, y_budget(budgets[frame]), x + bar / 2, bottom], fill=colour)
        draw.text((x, y_budget(budgets[frame]) - 3), str(budgets[frame]), fill=(30, 30, 30), font=FONT, anchor="mb")
        label = f"{frame + 1}" + (f" · {timestamps[frame]:.1f}s" if timestamps is not None else "")
        draw.text((x, bottom + 4), label, fill=(60, 60, 60), font=FONT, anchor="mt")
    if budget is not None:
        y = y_budget(budget)
        for x in range(int(left), int(right), 10):
            draw.line([(x, y), (min(x + 5, right), y)], fill=(90, 90, 90))
    for values, colour in ((rho, RHO_COLOUR), (phi, PHI_COLOUR)):
        points = [(left + slot * (frame + 0.5), y_unit(values[frame])) for frame in range(frames)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    total = sum(budgets)
    legend = f"per frame: N' (bars, right axis; {total} in all), rho (red) and phi (green) (left axis)"
    if budget is not None:
        legend += f", N = {budget} dashed"
    draw.text((left, 10), legend, fill=(20, 20, 20), font=FONT)
    draw.text(((left + right) / 2, CHART_HEIGHT - 12), "frame · time", fill=(60, 60, 60), font=FONT, anchor="mm")
    return image


SHEET_TITLES = {"kept": "Kept patches", "groups": "PSCA groups", "survivors": "NMS survivors"}
TITLE_HEIGHT = 26
TITLE_FONT = ImageFont.load_default(size=16)


def render_video_sheet(frames, selection, grids, timestamps=None, budget: int | None = None) -> Image.Image:
    """One picture of a clip's selection: the kept, groups and survivors strips and the
    per-frame chart, one under the other, each titled (what ``prunesid compress --out`` writes)."""
    layers = render_frame_layers(frames, selection, grids, timestamps)
    parts = [(SHEET_TITLES[name], layers[name]) for name in ("kept", "groups", "survivors")]
    parts.append(("Per frame: N', rho, phi", render_frame_chart(selection, timestamps, budget)))
    width = max(part.width for _, part in parts)
    sheet = Image.new("RGB", (width, sum(TITLE_HEIGHT + part.height for _, part in parts)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for title, part in parts:
        draw.text((4, y + TITLE_HEIGHT / 2), title, fill=(20, 20, 20), font=TITLE_FONT, anchor="lm")
        sheet.paste(part, (0, y + TITLE_HEIGHT))
        y += TITLE_HEIGHT + part.height
    return sheet
