"""InternVL's processor writes a clip as ``Frame1: <img>...</img>\\nFrame2: ...`` in the image
placeholder: the family reads each labelled run as a frame, a ``Frame1`` label starting the
next clip, so two clips in a row stay two clips (and an image after them an image)."""

from __future__ import annotations

import pytest
import torch

from prunesid import load_vlm
from prunesid.video import Video
from tests.conftest import scene

TOKENS_PER_VIEW = 256


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("tiny-random-internvl")


@pytest.fixture(scope="module")
def inputs(vlm):
    """The processor's output for two 3-frame clips, then a 3-view image."""
    first = Video.from_frames([scene(320, 240, seed=frame) for frame in range(3)])
    second = Video.from_frames([scene(240, 320, seed=10 + frame) for frame in range(3)])
    content = [{"type": "video"}, {"type": "video"}, {"type": "image"}, {"type": "text", "text": "Compare."}]
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    images, videos = [scene(900, 450, seed=3)], [list(first.frames), list(second.frames)]
    return vlm.processor(text=[text], images=images, videos=videos, return_tensors="pt")


def test_each_run_s_frame_label_is_read(vlm, inputs):
    assert vlm.family.frame_numbers(inputs["input_ids"][0]) == [1, 2, 3, 1, 2, 3, None]


def test_two_clips_in_a_row_and_an_image_are_three_inputs(vlm, inputs):
    items = vlm.family.split_inputs(dict(inputs))
    assert [(modality, pixels["pixel_values"].shape[0]) for modality, pixels, _ in items] == [("video", 3), ("video", 3), ("image", 3)]
    # The pixels are cut in order: the first clip's frames, the second's, the image's views.
    stacked = torch.cat([pixels["pixel_values"] for _, pixels, _ in items])
    assert torch.equal(stacked, inputs["pixel_values"])
    # Frames are resized whole: a one-tile size, whatever the clip's own shape.
    tile = vlm.family.layout.tile
    assert [size for modality, _, size in items if modality == "video"] == [(tile, tile)] * 2


def test_the_frame_runs_are_written_in_the_video_placeholder_and_nothing_else(vlm, inputs):
    family, ids = vlm.family, inputs["input_ids"][0]
    rewritten = family.processor_input_ids(ids)
    assert int((rewritten == family.placeholder_for("video")).sum()) == 6 * TOKENS_PER_VIEW
    assert int((rewritten == family.placeholder_for("image")).sum()) == 3 * TOKENS_PER_VIEW
    changed = rewritten != ids
    assert torch.equal(changed, (ids == family.placeholder_token_id) & (rewritten == family.video_token_id))
    assert torch.equal(family.model_input_ids(rewritten), ids)  # the model reads them as it read the processor's
