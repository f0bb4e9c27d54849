"""How the budget was shared between groups: one bar per group of one view.

Each bar shows the group's size (pale), its NMS survivors (mid) and the tokens it kept (full
colour, the group's colour in the groups overlay), so a reader sees why a group got its quota.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prunesid.selection import Selection
from viz.palette import selection_palette

WIDTH, HEIGHT = 640, 250
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 44, 38, 46
FONT = ImageFont.load_default(size=13)


def render_quotas(selection: Selection, view: int = 0) -> Image.Image:
    """Bar chart of group sizes, survivors and kept tokens for ``view`` of ``selection``."""
    if not 0 <= view < selection.num_views:
        raise ValueError(f"view must be in [0, {selection.num_views - 1}], got {view}")
    groups = selection.groups[view].cpu().numpy()
    num_groups = int(selection.num_groups[view])
    member = groups >= 0
    sizes = np.bincount(groups[member], minlength=num_groups)
    survivors = np.bincount(groups[member & selection.survivors[view].cpu().numpy()], minlength=num_groups)
    kept = selection.quotas[view, :num_groups].cpu().numpy()
    colours = selection_palette(selection)

    image = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 8, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    top = max(int(sizes.max()), 1)
    slot = plot_w / num_groups
    bar = max(slot * 0.8, 1.0)

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - value / top)

    draw.line([(MARGIN_LEFT, MARGIN_TOP), (MARGIN_LEFT, MARGIN_TOP + plot_h)], fill=(0, 0, 0))
    draw.line([(MARGIN_LEFT, MARGIN_TOP + plot_h), (WIDTH - 8, MARGIN_TOP + plot_h)], fill=(0, 0, 0))
    for value in (0, top // 2, top):
        draw.text((MARGIN_LEFT - 6, y(value)), str(value), fill=(60, 60, 60), font=FONT, anchor="rm")
    for g in range(num_groups):
        x0 = MARGIN_LEFT + g * slot + (slot - bar) / 2
        colour = tuple(int(c) for c in colours[g])
        pale = tuple(int(255 - (255 - c) * 0.25) for c in colours[g])
        mid = tuple(int(255 - (255 - c) * 0.55) for c in colours[g])
        draw.rectangle([x0, y(sizes[g]), x0 + bar, y(0)], fill=pale)
        draw.rectangle([x0, y(survivors[g]), x0 + bar, y(0)], fill=mid)
        # Kept counts are small next to group sizes: at least 3 px high, outlined, and written
        # above the bar (outside the bands, which stay readable).
        draw.rectangle([x0, min(y(kept[g]), y(0) - 3), x0 + bar, y(0)], fill=colour, outline=(20, 20, 20))
        if slot >= 14:
            draw.text((x0 + bar / 2, y(sizes[g]) - 2), str(int(kept[g])), fill=(20, 20, 20), font=FONT, anchor="mb")
            draw.text((x0 + bar / 2, y(0) + 3), str(g), fill=(60, 60, 60), font=FONT, anchor="mt")
    draw.text(
        (MARGIN_LEFT, 8),
        f"per group: size (pale), NMS survivors (mid), kept (dark; count above each bar): {int(kept.sum())} kept in {num_groups} groups",
        fill=(20, 20, 20), font=FONT,
    )
    draw.text((MARGIN_LEFT + plot_w / 2, HEIGHT - 2), "group (numbers as on the Groups overlay)", fill=(60, 60, 60), font=FONT, anchor="mb")
    return image
