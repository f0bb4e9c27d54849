"""The page's figures (demo/figures.py) on every image family: the parts of what is fed
(tokens, CLS, newline tokens) add up to the tokens the model feeds and to the library's
``fed_tokens``; CLS is named only where the family feeds one; the compression never reads
"1x" for a run that feeds more than the unmodified model."""

from __future__ import annotations

import pytest

from demo.figures import compression_text, tau_text
from demo.files import example_images
from demo.handlers import Handlers
from prunesid import PruneSID, load_vlm

FAMILIES = ["tiny-random", "tiny-random-next", "tiny-random-qwen2-vl", "tiny-random-mgm-hd", "tiny-random-llava-onevision", "tiny-random-internvl"]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_fed_tokens_add_up_and_match_the_library(name):
    """Catches "315 + CLS" beside 320 (MGM-HD's five CLS), an unexplained 40 on OneVision
    (its row newlines), and a CLS shown on a family without one."""
    vlm = load_vlm(name)
    handlers = Handlers(vlm)
    image = example_images()[0]
    *_, stats, table = handlers.analyze(image, 64, 0, 0, "psca", False)
    numbers = stats["figures"]
    encoded = handlers.encode(image)
    assert numbers["fed"] == vlm.fed_tokens(encoded.image_size, PruneSID(budget=64)) == stats["visual_tokens"]
    assert numbers["patches_kept"] + numbers["cls_fed"] + numbers["extra_fed"] == numbers["fed"]
    assert numbers["extra_fed"] == vlm.family.layout.extra_tokens(encoded.image_size)
    assert numbers["cls_fed"] == stats["reserved"] * encoded.num_views
    assert ("CLS" in table) == bool(stats["reserved"])
    assert numbers["unmodified"] == vlm.unmodified_visual_tokens(encoded)
    assert sum(numbers["kept_per_view"]) == numbers["patches_kept"] and len(numbers["kept_per_view"]) == encoded.num_views
    if numbers["extra_fed"]:
        assert f"+ {numbers['extra_fed']} newline tokens = {numbers['fed']}" in table


def test_compression_and_tau_are_written_as_they_are():
    """Catches "577 of 576 (compression 1.0x)" and "18 × 0.2259" for lambda 18.03125."""
    assert compression_text(576, 577) == "1x: 1 more than the unmodified model feeds"
    assert compression_text(576, 576) == "1x: as many as the unmodified model feeds (no compression)"
    assert compression_text(577, 576) == "1.002x" and compression_text(2880, 320) == "9x"
    assert tau_text("llava", 18.03125, 18.03125 * 0.2259).startswith("18.03125 × 0.2259 = ")
