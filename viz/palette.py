"""One colour per group, shared by every picture of a selection.

The palette is sized by the selection's largest K (over all its views), never by what one
view or one drawing happens to contain: group g has the same colour in the groups overlay,
the quota chart and every view.
"""

from __future__ import annotations

import matplotlib
import numpy as np

from prunesid.selection import Selection

TAB20_LIMIT = 20


def group_palette(num_groups: int) -> np.ndarray:
    """``[num_groups, 3]`` float32 RGB: tab20 up to 20 groups, a golden-angle hue wheel beyond."""
    if num_groups <= TAB20_LIMIT:
        colours = matplotlib.colormaps["tab20"](np.arange(num_groups))
    else:
        golden = (np.arange(num_groups) * 0.618033988749895) % 1.0
        colours = matplotlib.colormaps["hsv"](golden)
    return (colours[:, :3] * 255).astype(np.float32)


def selection_palette(selection: Selection) -> np.ndarray:
    """The palette of every drawing of ``selection``: sized by its largest K."""
    return group_palette(int(selection.num_groups.max()))
