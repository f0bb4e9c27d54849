"""Equal budgets, known before encoding: one contract over every registered press and every
built-in model.

- at the same N every press feeds exactly the same number of visual tokens (N = 16, 64,
  192), whatever it keeps;
- ``fed_tokens(image_size, press)``, computed from the image size alone, equals what the
  real run feeds, for several image sizes (and the unmodified model's count for no press);
- on LLaVA-NeXT both ``newlines`` layouts hold it, and "authors" feeds exactly views x N;
- a dynamic budget (PruneSID-Dyn) says it cannot be pre-sized.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from prunesid import PruneSID, load_vlm
from prunesid.methods.registry import presses
from prunesid.vlm import BUILTIN_MODELS, wrap
from tests.conftest import scene

QUESTION = "What is in the picture?"
BUDGETS = (16, 64, 192)
# Image sizes and the budgets tried on each: (1000, 60) leaves LLaVA-NeXT's tiles 96 selectable
# patches (fewer than N = 192: a view then feeds all of them); (60, 60) gives Qwen-VL 4 tokens.
SIZES = {(640, 480): BUDGETS, (300, 700): (64,), (1000, 60): (192,), (60, 60): (64,)}
CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
FIXTURES = {"tiny-random": "tiny_vlm", "tiny-random-next": "tiny_next_vlm"}


@functools.lru_cache(maxsize=None)
def _load(name):
    return load_vlm(name)


def _vlm(request, name):
    return request.getfixturevalue(FIXTURES[name]) if name in FIXTURES else _load(name)


def _layouts(vlm):
    """The VLM, and for LLaVA-NeXT the same model under each ``newlines`` layout."""
    if vlm.model.config.model_type != "llava_next":
        return [vlm]
    return [wrap(vlm.model, vlm.processor, name=vlm.name, newlines=newlines) for newlines in ("authors", "rows")]


def _fed(vlm, media, press) -> int | None:
    """Visual tokens the real run feeds (None: the press cannot run on this tower)."""
    encoded = vlm.encode(media)
    tokens = vlm.vision_tokens([encoded])
    if press is not None and press.missing_inputs(tokens):
        with pytest.raises(ValueError):
            vlm.prepare(media, QUESTION, press)
        with pytest.raises(ValueError, match="cannot run on this model: it needs the CLS token's attention"):
            vlm.fed_tokens(encoded.image_size, press, encoded.modality)
        return None
    prepared = vlm.prepare(media, QUESTION, press)
    placeholder = vlm.family.placeholder_for(encoded.modality)
    count = prepared.visual_tokens[0]
    assert int((prepared.input_ids[0] == placeholder).sum()) == count == int(prepared.runs[0].embeds.shape[0])
    return count


@pytest.mark.parametrize("model", BUILTIN_MODELS)
def test_every_press_feeds_the_same_count_known_before_encoding(request, model):
    vlm = _vlm(request, model)
    for layout in _layouts(vlm):
        for size in SIZES:
            image = scene(*size, seed=sum(size))
            assert layout.fed_tokens(size, None) == _fed(layout, image, None) == layout.unmodified_visual_tokens(layout.encode(image))
            encoded = layout.encode(image)  # the grids, from the size alone, cover the tower's tokens
            assert [grid.num_patches for grid in encoded.grids] == [encoded.features.shape[1]] * encoded.num_views
            for budget in SIZES[size]:
                counts = {}
                for name, cls in presses().items():
                    press = cls(budget=budget)
                    fed = _fed(layout, image, press)
                    if fed is not None:
                        counts[name] = fed
                        assert layout.fed_tokens(size, press) == fed, (name, budget, size)
                assert len(set(counts.values())) == 1, f"{model} {size} N={budget}: {counts}"
                assert len(counts) >= 4


def test_video_frames_feed_the_same_count_for_every_press(request):
    vlm = _vlm(request, "tiny-random-video-llava")
    from prunesid.video import load_video

    clip = load_video(CLIP, num_frames=vlm.family.num_frames)
    size = clip.frames[0].size
    assert vlm.fed_tokens(size, None, "video") == _fed(vlm, clip, None) == 8 * 257
    grids = vlm.encode(clip).grids
    assert [(grid.label, grid.num_patches) for grid in grids] == [(f"frame {frame}", 256) for frame in range(1, 9)]
    for budget in (16, 64):
        counts = {name: _fed(vlm, clip, cls(budget=budget)) for name, cls in presses().items()}
        assert set(counts.values()) == {8 * budget} == {vlm.fed_tokens(size, cls(budget=budget), "video") for cls in presses().values()}


def test_next_authors_layout_feeds_exactly_views_times_n(tiny_next_vlm):
    image = scene(640, 480, seed=7)
    views = tiny_next_vlm.encode(image).num_views
    for budget in BUDGETS:  # every view of this image has at least 192 selectable patches
        assert tiny_next_vlm.fed_tokens(image.size, PruneSID(budget=budget)) == views * budget
    rows = wrap(tiny_next_vlm.model, tiny_next_vlm.processor, name="rows", newlines="rows")
    unpadded_rows = rows.family.layout.unpadded_shape(image.size)[0]
    assert rows.fed_tokens(image.size, PruneSID(budget=64)) == views * 64 + unpadded_rows
    # The measurement: 640 x 480 at N = 64 fed 356 / 355 / 334 before; now 320 for all.
    assert {_fed(tiny_next_vlm, image, cls(budget=64)) for cls in presses().values()} == {320}


def test_a_dynamic_budget_cannot_be_pre_sized(tiny_vlm):
    with pytest.raises(ValueError, match="cannot be known before encoding"):
        tiny_vlm.fed_tokens((640, 480), PruneSID(budget=64, dynamic=True, phi_ref=0.5))


@pytest.mark.parametrize("size", [(0, 480), (640,), "640x480", (640.0, 480)])
def test_a_bad_image_size_is_named(tiny_vlm, size):
    with pytest.raises(ValueError, match="image_size must be"):
        tiny_vlm.fed_tokens(size, PruneSID(budget=64))


def test_the_newlines_layout_reaches_the_command_line(tmp_path, capsys):
    import json

    from prunesid import cli
    from prunesid.families.llava_next.adapter import NEWLINES

    assert cli.NEWLINES == NEWLINES
    image = scene(640, 480, seed=9)
    image.save(tmp_path / "scene.png")
    counts = {}
    for newlines in NEWLINES:
        argv = ["chat", str(tmp_path / "scene.png"), "What?", "--model", "tiny-random-next", "--budget", "16", "--max-new-tokens", "1", "--json"]
        assert cli.main([*argv, "--newlines", newlines]) == 0
        counts[newlines] = json.loads(capsys.readouterr().out)["visual_tokens"]
    assert counts == {"authors": [5 * 16], "rows": [5 * 16 + 36]}  # 640 x 480 unpads to 36 rows of 48 patches
