"""The press path on several inputs at once: each input gets back its own views and tokens.

Written from the survivors of a mutation run over prunesid/pipeline.py: every other test
compresses one input, or inputs of one size, so the batch's bookkeeping went unchecked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from prunesid import PruneSID, load_vlm
from prunesid.pipeline import compress, cut_placeholder_runs

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
# Three sizes give three token counts on Qwen2-VL: the batch pads the two smaller ones.
SIZES = [(84, 56), (140, 112), (56, 196)]


@pytest.fixture(scope="module")
def qwen():
    return load_vlm("tiny-random-qwen2-vl")


def scenes():
    images = []
    for seed, size in enumerate(SIZES):
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
        images.append(Image.fromarray(pixels.numpy()))
    return images


def text_ids(vlm, text: str) -> torch.Tensor:
    return vlm.processor.tokenizer(text, return_tensors="pt")["input_ids"]


def test_inputs_of_three_sizes_in_one_batch_each_get_their_own_result(qwen):
    """Bugs caught: the batch padding left on an input's result (``!=`` flipped, or the cut
    given no length), and the running view offset reset instead of advanced (``start =``
    for ``start +=``: the third input got the second's views)."""
    encoded = [qwen.encode(image) for image in scenes()]
    tokens = [item.features.shape[1] for item in encoded]
    assert len(set(tokens)) == 3  # three sizes, so the batch is padded
    press = PruneSID(budget=16)  # a fixed budget: each view is decided on its own
    together = compress(qwen.family, encoded, press)
    assert [part.tokens_per_view for part in together] == tokens
    for item, part in zip(encoded, together):
        (alone,) = compress(qwen.family, [item], press)
        assert part.tokens_per_view == alone.tokens_per_view
        assert [index.tolist() for index in part.indices] == [index.tolist() for index in alone.indices]


def test_placeholder_runs_are_cut_run_by_run():
    """Bug caught: the offset of the next run reset to the last run's length instead of
    advanced by it (a third run would be cut where the second was)."""
    ids = torch.tensor([[1] + [9] * 5 + [2] + [9] * 4 + [3] + [9] * 3 + [4]])
    cut = cut_placeholder_runs(ids, 9, [5, 4, 3], [2, 4, 1])
    assert cut.tolist() == [[1, 9, 9, 2, 9, 9, 9, 9, 3, 9, 4]]


def test_a_run_asked_for_more_tokens_than_its_room_is_named():
    ids = torch.tensor([[1, 9, 9, 2]])
    with pytest.raises(ValueError, match=r"^an input would get 3 visual tokens but the prompt has room for 2$"):
        cut_placeholder_runs(ids, 9, [2], [3])


def test_the_batch_feeds_the_cls_only_if_every_input_does():
    """Bug caught: the batch's ``cls_fed`` lost (None), so PruneSID-Dyn's cap at what the
    unmodified model feeds would leave out the CLS a Video-LLaVA clip feeds per frame."""
    from prunesid.pipeline import vision_tokens
    from prunesid.video import load_video

    vlm = load_vlm("tiny-random-video-llava")
    clip, image = vlm.encode(load_video(CLIP)), vlm.encode(scenes()[0])
    assert (clip.cls_fed, image.cls_fed) == (True, False)
    assert vision_tokens(vlm.family, [clip]).cls_fed is True
    assert vision_tokens(vlm.family, [image]).cls_fed is False
    assert vision_tokens(vlm.family, [clip, image]).cls_fed is False


def test_press_inputs_refuses_what_is_not_one_conversation_or_not_a_press(qwen):
    """Bugs caught: ``or`` read as ``and`` in the shape check (a batch of two conversations
    let through), the press check given nothing, the message's shape lost."""
    from prunesid.pipeline import press_inputs

    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"^a press needs the input ids of one conversation \(\[1, L\]\), got shape \[2, 3\]$"):
        press_inputs(qwen.family, ids.repeat(2, 1), [], None)
    with pytest.raises(ValueError, match=r"got shape \[3\]$"):
        press_inputs(qwen.family, ids[0], [], None)
    with pytest.raises(TypeError, match=r"^press must be a prunesid press \(e\.g\. prunesid\.PruneSID\) or None, got str$"):
        press_inputs(qwen.family, ids, [], "prunesid")


def test_no_press_feeds_every_token_without_running_one(qwen):
    """Bug caught: the press path run with ``press=None`` (it must feed the unmodified model's
    tokens and compute no result)."""
    from prunesid.pipeline import press_inputs

    image = scenes()[1]
    encoded = qwen.encode(image)
    text = qwen.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}], add_generation_prompt=True, tokenize=False,
    )
    ids = qwen.processor.tokenizer(text, return_tensors="pt")["input_ids"]
    pressed = press_inputs(qwen.family, ids, [encoded], None)
    assert pressed.compressions == [None]
    assert pressed.visual_tokens == pressed.unmodified_tokens


def test_a_prompt_without_media_is_left_as_it_is(qwen):
    """Bug caught: the placeholder runs read from an empty media list (``zip(*())`` fails:
    a text-only question could not be asked)."""
    from prunesid.pipeline import press_inputs

    ids = text_ids(qwen, "no picture here")
    pressed = press_inputs(qwen.family, ids, [], PruneSID(budget=16))
    assert pressed.input_ids.tolist() == ids.tolist()
    assert (pressed.visual_tokens, pressed.unmodified_tokens, pressed.compressions) == ([], [], [])


def test_a_video_placeholder_without_a_video_is_refused_by_name():
    """Bugs caught: the video runs checked only when a video is given (a stray video
    placeholder then reached the model), and the modality left out of the message."""
    from prunesid.pipeline import press_inputs

    vlm = load_vlm("tiny-random-video-llava")
    config = vlm.model.config
    encoded = vlm.encode(scenes()[0])
    ids = torch.tensor([[1, config.image_token_id, 5, config.video_token_id, 2]])
    message = r"^the prompt holds 1 video placeholder tokens but its 0 video\(s\) need one each or 0 \(\[\]"
    with pytest.raises(ValueError, match=message):
        press_inputs(vlm.family, ids, [encoded], PruneSID(budget=16))


def test_the_layout_time_is_reported_in_milliseconds(qwen):
    """Bugs caught: the layout's time dropped, renamed or measured from the wrong origin
    (``perf_counter() + start``). Only its key and bounds are checked: no test times code."""
    import time

    from prunesid.pipeline import press_inputs

    ids = text_ids(qwen, "no picture here")
    before = time.perf_counter()
    pressed = press_inputs(qwen.family, ids, [], None)
    elapsed_ms = (time.perf_counter() - before) * 1000
    assert list(pressed.timings) == ["layout_ms"]
    assert 0 <= pressed.timings["layout_ms"] <= elapsed_ms


def test_the_tower_time_is_reported_in_milliseconds(qwen):
    """Bugs caught: the tower's time dropped or measured from the wrong origin (key and
    bounds only, as above)."""
    import time

    from prunesid.pipeline import encode_media

    image = scenes()[0]
    pixel_inputs = qwen.family.preprocess(image)
    before = time.perf_counter()
    encoded = encode_media(qwen.family, "key", image, pixel_inputs, "image")
    elapsed_ms = (time.perf_counter() - before) * 1000
    assert 0 <= encoded.vision_ms <= elapsed_ms


def test_internvl_attention_keys_reach_visionzip():
    """Bug caught: the tower's attention keys dropped on the way to the press (VisionZip then
    measures its merges in feature space, silently, instead of the keys' space)."""
    from prunesid import VisionZip

    vlm = load_vlm("tiny-random-internvl")
    encoded = vlm.encode(scenes()[1])
    assert encoded.keys is not None
    (result,) = vlm.compress([encoded], VisionZip(budget=16))
    assert result.space == "keys"


def test_onevision_images_among_several_and_clips_get_their_own_views():
    """Bugs caught: the grids or the valid patches of an image among several computed without
    its pixel inputs, or a clip's as an image's: an image among several is one square-padded
    view with every token selectable, and a clip's frames are the layout's video views."""
    from prunesid.pipeline import encode_media
    from prunesid.video import load_video

    vlm = load_vlm("tiny-random-llava-onevision")
    layout, image = vlm.family.layout, scenes()[1]
    pixel_inputs = {**vlm.family.preprocess(image), "batch_num_images": torch.tensor([2])}  # as the processor marks it
    encoded = encode_media(vlm.family, "key", image, pixel_inputs, "image")
    assert encoded.features.shape[0] == 1
    assert encoded.grids == [layout.square_grid(image.size)]
    assert encoded.valid is None
    alone = vlm.encode(image)  # the same image alone: the anyres views, some tokens unselectable
    assert alone.grids == layout.grids(image.size, "image") and alone.valid is not None
    clip = vlm.encode(load_video(CLIP))
    assert clip.grids == layout.grids(clip.image.size, "video")[: clip.features.shape[0]]
    expected = layout.valid_patches(clip.image.size, "video")
    assert (clip.valid is None and expected is None) or torch.equal(clip.valid, expected)
