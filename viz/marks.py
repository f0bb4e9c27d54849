"""Marks drawn over a finished overlay: the clicked patch and the survivor that suppressed it
outlined, and the group numbers written on the groups layer, so the explanation's "patch 37",
"suppressed by patch 12" and "group 6" can be found in the picture.

Positions come from the same canvases the overlay was drawn on (:func:`viz.overlay.canvases`)
and the same panel placement :func:`viz.explain.locate` reads clicks with.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prunesid.geometry import PatchGrid
from prunesid.selection import Selection
from viz.overlay import CAPTION_HEIGHT, GAP, canvases

CLICKED_EDGE = (0, 160, 255)  # the clicked patch: blue, distinct from kept yellow and survivor green
SUPPRESSOR_EDGE = (255, 60, 200)  # the survivor that suppressed it: magenta
NUMBER_FONT = ImageFont.load_default(size=13)


def placed_canvases(image: Image.Image, grids: list[PatchGrid]):
    """``(left, top, canvas)`` of every panel, as the overlay places them."""
    panels = canvases(image, grids)
    if len(panels) == 1 and not panels[0][0]:
        return [(0, 0, panels[0][1])]
    placed, left = [], 0
    for _, canvas in panels:
        placed.append((left, CAPTION_HEIGHT, canvas))
        left += canvas.view.shape[1] + GAP
    return placed


def patch_box(image: Image.Image, grids: list[PatchGrid], view: int, patch: int, placed=None) -> tuple[int, int, int, int] | None:
    """The pixel box (left, top, right, bottom; inclusive) of one patch on the overlay, None
    when it is not drawn (e.g. wholly off the image's canvas)."""
    for left, top, canvas in placed or placed_canvases(image, grids):
        rows, cols = np.nonzero((canvas.view == view) & (canvas.patch == patch))
        if rows.size:
            return left + int(cols.min()), top + int(rows.min()), left + int(cols.max()), top + int(rows.max())
    return None


def outline_patches(overlay: Image.Image, image: Image.Image, grids: list[PatchGrid], marks: list[tuple[int, int, tuple]]) -> Image.Image:
    """A copy of ``overlay`` with each ``(view, patch, colour)`` outlined (3 px, inside a
    white 1 px ring so it shows on any colour)."""
    marked = overlay.copy()
    draw = ImageDraw.Draw(marked)
    placed = placed_canvases(image, grids)
    for view, patch, colour in marks:
        box = patch_box(image, grids, view, patch, placed)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=(255, 255, 255), width=1)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=3)
    return marked


def group_labels(image: Image.Image, selection: Selection, grids: list[PatchGrid]) -> list[tuple[str, tuple[float, float], ImageFont.ImageFont, tuple]]:
    """Where each group's number goes: ``(text, centre, font, box)``, one per group and view
    whose number fits. A number sits on the group's member nearest its centre; if its box
    would overlap one already placed, on the next nearest member, then at a smaller size; a
    number that fits nowhere (or would run off its panel) is left out, so no two numbers ever overlap (a tall thin image
    has small patches, and neighbouring groups' centres close together)."""
    groups = selection.groups.cpu().numpy()
    placed = placed_canvases(image, grids)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels, taken = [], []
    for view, grid in enumerate(grids):
        rows, cols = np.divmod(np.arange(grid.num_patches), grid.cols)
        for group in range(int(selection.num_groups[view])):
            members = np.nonzero(groups[view] == group)[0]
            if members.size == 0:
                continue
            centre_r, centre_c = rows[members].mean(), cols[members].mean()
            nearest_first = members[np.argsort((rows[members] - centre_r) ** 2 + (cols[members] - centre_c) ** 2, kind="stable")]
            label = _free_spot(str(group), nearest_first[:PLACES_TRIED], image, grids, view, placed, measure, taken)
            if label is not None:
                labels.append(label)
                taken.append(label[3])
    return labels


PLACES_TRIED = 12  # members of a group tried for its number, nearest the centre first
NUMBER_FONTS = (NUMBER_FONT, ImageFont.load_default(size=10))  # the usual size, then a smaller one
NUMBER_STROKE = 2


def _free_spot(text, members, image, grids, view, placed, measure, taken):
    for font in NUMBER_FONTS:
        for member in members:
            box = patch_box(image, grids, view, int(member), placed)
            if box is None:
                continue
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            bounds = measure.textbbox(centre, text, font=font, anchor="mm", stroke_width=NUMBER_STROKE)
            panel = next(((left, top, left + c.view.shape[1], top + c.view.shape[0]) for left, top, c in placed if _inside(box, left, top, c)), None)
            on_panel = panel is not None and panel[0] <= bounds[0] and panel[1] <= bounds[1] and bounds[2] <= panel[2] and bounds[3] <= panel[3]
            if on_panel and not any(_overlap(bounds, other) for other in taken):
                return text, centre, font, bounds
    return None


def _inside(box, left, top, canvas) -> bool:
    return left <= box[0] and top <= box[1] and box[2] < left + canvas.view.shape[1] and box[3] < top + canvas.view.shape[0]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def number_groups(overlay: Image.Image, image: Image.Image, selection: Selection, grids: list[PatchGrid]) -> Image.Image:
    """A copy of the groups overlay with each group's number written on it in every view
    (placed by :func:`group_labels`: never two numbers over each other)."""
    marked = overlay.copy()
    draw = ImageDraw.Draw(marked)
    for text, centre, font, _ in group_labels(image, selection, grids):
        draw.text(centre, text, fill=(255, 255, 255), font=font, anchor="mm", stroke_width=NUMBER_STROKE, stroke_fill=(0, 0, 0))
    return marked
