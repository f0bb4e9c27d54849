"""The page's figures (demo/figures.py) on every image family: the parts of what is fed
(tokens, CLS, newline tokens) add up to the tokens the model feeds and to the library's
``fed_tokens``; CLS is named only where the family feeds one; the compression never reads
"1x" for a run that feeds more than the unmodified model."""

from __future__ import annotations

import pytest

from demo.controls import Controls
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
    *_, stats, table = handlers.analyze(image, Controls.read(64, 0, 0, "psca", False))
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


@pytest.mark.parametrize("budget", [8, 64, 288])
@pytest.mark.parametrize("dynamic", [False, True])
def test_the_qwen_budget_row_states_n_eff_its_floor_and_the_dynamic_shares(budget, dynamic):
    """Catches N_eff written from the dynamic shares ("round(T·N/576) = 8, 24"), a floor of 16
    left unsaid (round(T·8/576) is below it) and dynamic shares that are not the kept counts."""
    vlm = load_vlm("tiny-random-qwen2-vl")
    handlers = Handlers(vlm)
    image = example_images()[0]
    *_, stats, _table = handlers.analyze(image, Controls.read(budget, 0, 0, "psca", dynamic))
    text = stats["figures"]["budget_text"]
    kept = stats["figures"]["kept_per_view"]
    tokens = int(stats["figures"]["tokens_per_view"])
    raw = round(tokens * budget / 576)
    n_eff = max(raw, 16)
    assert f"max(round({tokens}·{budget}/576), 16) = " in text
    assert ("the floor of 16 applies" in text) == (raw < 16)
    if dynamic:
        assert f"= {n_eff}" in text.split(";")[0]
        shares = ", ".join(map(str, kept)) if len(set(kept)) > 1 else str(kept[0])
        assert f"dynamic N'_eff = {shares} " in text
    else:
        assert f"= {kept[0]}" in text.split(";")[0] and kept[0] == n_eff
