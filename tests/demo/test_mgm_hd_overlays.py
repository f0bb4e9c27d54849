"""Mini-Gemini HD in the demo: its five views (the global view and the 2 x 2 crops) are drawn
as LLaVA-NeXT's are, the global view beside a mosaic of the crops, and a click on each crop
of the mosaic explains a patch of that crop. Slow tier, as every MGM-HD test."""

from __future__ import annotations

import pytest

from demo.controls import Controls
from demo.files import example_images
from demo.handlers import Handlers
from viz.overlay import CAPTION_HEIGHT, GAP, canvases

BUILTIN = "tiny-random-mgm-hd"
pytestmark = pytest.mark.slow  # two towers on five views of a 1536 px image


@pytest.fixture(scope="module")
def mgm_hd():
    from prunesid import load_vlm

    return Handlers(load_vlm(BUILTIN))


def test_the_overlays_show_the_global_view_and_every_crop(mgm_hd):
    image = example_images()[-1]
    groups, survivors, kept, quotas, stats, table = mgm_hd.analyze(image, Controls.read(64, 0, 0, "psca", False))
    assert stats["views"] == 5 and stats["first_view"] == "global"
    assert "in 5 views" in table and "— global view" in table and "315 tokens + 5 CLS (one per view) = 320" in table
    encoded = mgm_hd.encode(image)
    assert [grid.label for grid in encoded.grids] == ["global", "crop 0,0", "crop 0,1", "crop 1,0", "crop 1,1"]
    panels = canvases(encoded.image, encoded.grids)
    assert [caption for caption, _ in panels] == ["global", "tiles"]  # as LLaVA-NeXT's base view and tiles
    assert kept.size == groups.size == survivors.size
    # A click on each quarter of the mosaic lands on that crop.
    (_, base), (_, mosaic) = panels
    left = base.view.shape[1] + GAP
    seen = set()
    height, width = mosaic.view.shape
    for row in (0.25, 0.75):
        for col in (0.25, 0.75):
            x, y = left + int(width * col), CAPTION_HEIGHT + int(height * row)
            text, why = mgm_hd.explain(image, Controls.read(64, 0, 0, "psca", False), x, y)[:2]
            assert why is not None and "view" in why, (x, y, text)
            seen.add(why["view"])
    assert seen == {1, 2, 3, 4}, seen
