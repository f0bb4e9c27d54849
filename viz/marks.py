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


def number_groups(overlay: Image.Image, image: Image.Image, selection: Selection, grids: list[PatchGrid]) -> Image.Image:
    """A copy of the groups overlay with each group's number written on one of its patches
    (the member nearest the group's centre) in every view."""
    marked = overlay.copy()
    draw = ImageDraw.Draw(marked)
    groups = selection.groups.cpu().numpy()
    placed = placed_canvases(image, grids)
    for view, grid in enumerate(grids):
        rows, cols = np.divmod(np.arange(grid.num_patches), grid.cols)
        for group in range(int(selection.num_groups[view])):
            members = np.nonzero(groups[view] == group)[0]
            if members.size == 0:
                continue
            centre_r, centre_c = rows[members].mean(), cols[members].mean()
            nearest = members[np.argmin((rows[members] - centre_r) ** 2 + (cols[members] - centre_c) ** 2)]
            box = patch_box(image, grids, view, int(nearest), placed)
            if box is None:
                continue
            x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            draw.text((x, y), str(group), fill=(255, 255, 255), font=NUMBER_FONT, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
    return marked
