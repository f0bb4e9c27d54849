"""Small rules of the family adapters that the mutation runs found unchecked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from prunesid.families.llava.adapter import _resize_rule


@pytest.mark.parametrize(
    ("image_size", "expected"),
    [((600, 300), (672, 336)), ((300, 600), (336, 672)), ((500, 333), (504, 336)), ((336, 336), (336, 336))],
)
def test_a_clip_processor_resizes_the_short_side_to_its_edge_keeping_the_aspect(image_size, expected):
    """Bug caught: the long side scaled by ``long * short`` instead of ``long / short`` (the
    overlays' boxes would then sit far outside the picture). Expected sizes worked out by hand:
    the short side becomes 336, the long side 336 x long / short, rounded down."""
    assert _resize_rule({"shortest_edge": 336}, True, image_size) == expected
    assert _resize_rule({"height": 224, "width": 224}, True, image_size) == (224, 224)
    assert _resize_rule({"shortest_edge": 336}, False, image_size) == image_size


@pytest.mark.parametrize("name", ["min_pixels", "max_pixels"])
def test_a_pixel_limit_that_is_not_a_positive_integer_is_refused_by_its_name(name):
    """Bug caught: the limit's name mangled in the Qwen adapter's own refusal (``MAX_PIXELS``),
    which guards the adapter built without load_vlm's option checks (whose words are tested
    with the options)."""
    from prunesid.families.qwen_vl.adapter import _pixel_limits

    processor = SimpleNamespace(size={"shortest_edge": 3136, "longest_edge": 12845056})
    limits = {"min_pixels": None, "max_pixels": None, name: 0}
    with pytest.raises(ValueError, match=rf"^{name} must be a positive integer number of pixels, got 0$"):
        _pixel_limits(processor, limits["min_pixels"], limits["max_pixels"], 28)


def test_a_clip_group_left_without_tokens_is_named_by_its_number():
    """Bug caught: the empty temporal group counted from 0 or -1 in the refusal (``index - 1``):
    a Qwen3-VL clip fed tokens of its first group only names group 2 as empty."""
    from pathlib import Path

    import torch

    from prunesid import load_vlm
    from prunesid.family_kit.base import VisualRun
    from prunesid.video import load_video

    vlm = load_vlm("tiny-random-qwen3-vl")
    clip = vlm.encode(load_video(Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"))
    groups, per_group = clip.features.shape[:2]
    assert groups >= 2
    run = VisualRun(torch.zeros(3, 8), torch.tensor([0, 1, 2]))  # three tokens, all of the first group
    ids = torch.tensor([[vlm.family.placeholder_for("video")]])
    with pytest.raises(ValueError, match=r"^temporal group 2 of a clip has no visual token left; every group needs at least one$"):
        vlm.family.unpruned_indices(ids, [run], [clip])
