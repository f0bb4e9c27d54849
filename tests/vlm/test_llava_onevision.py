"""LLaVA-OneVision on the offline tiny-random-llava-onevision (real geometry: SigLIP 384 px,
27 x 27 = 729 tokens per view, no CLS, anyres_max_9 tiles, frames pooled to 14 x 14).

The references are transformers' own: the model fed by its processor (placeholder runs the
processor counts, pixels through the model's own vision path), never the library's layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prunesid import PruneSID, load_vlm, press_applied
from prunesid.methods.registry import presses
from prunesid.video import load_video
from prunesid.vlm import wrap
from prunesid.family_kit import builtin_directory
from tests.conftest import fed_to_language_model, scene

NAME = "tiny-random-llava-onevision"
CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
QUESTION = "What is in the picture?"
KEEP_ALL = PruneSID(budget=100_000, keep_cls=False, order="spatial")
VIEW, FRAME = 729, 196  # tokens per view (27 x 27) and per pooled frame (14 x 14)
# 729 tokens per view and ~3,000 per image reach the tiny LLM: the slow tier (tests/conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm():
    return load_vlm(NAME)


@pytest.fixture(scope="module")
def short_clip():
    return load_video(CLIP, num_frames=6)  # fewer frames than the model's 32: a lighter clip


def _reference(vlm, content, **media):
    """transformers' own run: the processor's input ids and pixels, and the model's logits."""
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    inputs = vlm.processor(text=text, return_tensors="pt", **media)
    with torch.inference_mode():
        logits = vlm.model(**inputs).logits
    return inputs, logits


def _logits(vlm, prepared):
    with torch.inference_mode():
        return vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits


def _greedy(vlm, inputs, new_tokens):
    generated = vlm.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    return vlm.processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _frames(clip):
    return [np.stack([np.asarray(frame) for frame in clip.frames])]


# --- geometry and counts --------------------------------------------------------------


def test_a_640x480_image_is_a_base_view_and_four_tiles_and_its_counts_are_known_before_encoding(vlm):
    image = scene(640, 480, seed=1)
    encoded = vlm.encode(image)
    assert encoded.importance is None and encoded.cls is None  # SigLIP: no CLS, the PSCA score stands in
    assert tuple(encoded.features.shape) == (5, VIEW, vlm.model.config.text_config.hidden_size)  # cut in the LLM's width
    assert [grid.label for grid in encoded.grids] == ["base", "tile 0,0", "tile 0,1", "tile 1,0", "tile 1,1"]
    # 768 x 768 pinpoint: a 54 x 54 patch grid, unpadded to 40 rows (7 above, 7 below), 54 columns.
    assert encoded.valid.sum(1).tolist() == [729, 20 * 27, 20 * 27, 20 * 27, 20 * 27]
    assert vlm.family.layout.fed_shape(image.size) == (40, 54)
    inputs, _ = _reference(vlm, [{"type": "image"}, {"type": "text", "text": QUESTION}], images=image)
    processor_count = int((inputs["input_ids"] == vlm.model.config.image_token_id).sum())
    assert vlm.fed_tokens(image.size) == vlm.unmodified_visual_tokens(encoded) == processor_count == 729 + 40 * 55
    # N = 64: 5 views x 64, plus one newline per row of the fed grid ("rows", the default) or none.
    assert vlm.fed_tokens(image.size, PruneSID(budget=64)) == 5 * 64 + 40 == 360
    authors = wrap(vlm.model, vlm.processor, name=NAME, newlines="authors")
    assert authors.fed_tokens(image.size, PruneSID(budget=64)) == 5 * 64 == 320
    # A clip: 32 frames x 196 pooled tokens + one newline; at N = 64, 32 x 64 + 1.
    assert vlm.family.num_frames == 32
    assert vlm.fed_tokens(image.size, None, "video") == 32 * FRAME + 1 == 6273
    assert vlm.fed_tokens(image.size, PruneSID(budget=64), "video") == 32 * 64 + 1


@pytest.mark.parametrize("size", [(640, 480), (300, 700), (1000, 60), (1200, 900), (1500, 1000), (2300, 400)])
def test_every_token_reaches_the_llm_as_the_model_packs_it(vlm, size):
    """Keeping everything feeds exactly the model's own image features (base view, unpadded
    grid, newlines), also where the model downscales the grid (1200 x 900) and just below the
    limit (1500 x 1000)."""
    image = scene(*size, seed=sum(size))
    pixels = vlm.family.preprocess(image)
    with torch.inference_mode():
        expected = vlm.model.model.get_image_features(pixels["pixel_values"], pixels["image_sizes"]).pooler_output[0]
    for press in (None, KEEP_ALL):
        run = vlm.prepare(image, QUESTION, press).runs[0]
        assert torch.equal(run.embeds, expected)
        assert vlm.fed_tokens(size, press) == expected.shape[0]
    rows, cols = vlm.family.layout.fed_shape(size)
    assert expected.shape[0] == VIEW + rows * (cols + 1)
    if size == (1200, 900):  # 3 x 4 tiles, 81 x 108 unpadded, ratio 1.155 > 1.1: floor(81 / r) x floor(108 / r)
        assert (rows, cols) == (70, 93)
    if size == (1500, 1000):  # 3 x 4 tiles, 73 x 108 unpadded, ratio 1.096: kept as it is
        assert (rows, cols) == (73, 108)


# --- keeping everything is the unmodified model ---------------------------------------------


def test_keeping_everything_on_one_image_equals_the_unmodified_model(vlm):
    image = scene(640, 480, seed=2)
    inputs, expected = _reference(vlm, [{"type": "image"}, {"type": "text", "text": QUESTION}], images=image)
    for press in (KEEP_ALL, None):
        prepared = vlm.prepare(image, QUESTION, press)
        assert torch.equal(prepared.input_ids, inputs["input_ids"]) and prepared.visual_tokens == [2929]
        torch.testing.assert_close(_logits(vlm, prepared), expected, rtol=1e-4, atol=1e-5)
    assert vlm.chat(image, QUESTION, press=KEEP_ALL, max_new_tokens=8).text == _greedy(vlm, inputs, 8)


def test_keeping_everything_on_two_images_equals_the_unmodified_model(vlm):
    """Two images as one flat list (what ``processor(images=[a, b])`` makes of them): each is
    tiled as when alone."""
    first, second = scene(640, 480, seed=3), scene(300, 700, seed=4)
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare them."}]
    inputs, expected = _reference(vlm, content, images=[first, second])
    prepared = vlm.prepare([first, second], "Compare them.", KEEP_ALL)
    assert torch.equal(prepared.input_ids, inputs["input_ids"]) and prepared.visual_tokens == [2929, 2025]
    torch.testing.assert_close(_logits(vlm, prepared), expected, rtol=1e-4, atol=1e-5)
    assert vlm.chat([first, second], "Compare them.", press=KEEP_ALL, max_new_tokens=6).text == _greedy(vlm, inputs, 6)


def test_keeping_everything_on_a_clip_equals_the_unmodified_model(vlm, short_clip):
    inputs, expected = _reference(vlm, [{"type": "video"}, {"type": "text", "text": "What happens?"}], videos=_frames(short_clip))
    assert tuple(inputs["pixel_values_videos"].shape) == (1, 6, 3, 384, 384)
    for press in (KEEP_ALL, None):
        prepared = vlm.prepare(short_clip, "What happens?", press)
        assert torch.equal(prepared.input_ids, inputs["input_ids"])
        assert prepared.visual_tokens == prepared.unmodified_tokens == [6 * FRAME + 1]
        torch.testing.assert_close(_logits(vlm, prepared), expected, rtol=1e-4, atol=1e-5)
    assert vlm.chat(short_clip, "What happens?", press=KEEP_ALL, max_new_tokens=6).text == _greedy(vlm, inputs, 6)
    encoded = vlm.encode(short_clip)
    assert [(grid.label, grid.rows, grid.cols) for grid in encoded.grids] == [(f"frame {i}", 14, 14) for i in range(1, 7)]


# --- what the LLM receives at N = 64 --------------------------------------------------------


def test_at_n_64_the_llm_receives_the_kept_tokens_of_the_models_own_packing(vlm):
    """640 x 480 at N = 64: 360 visual tokens = the base view's 64 kept tokens, then the 4 x 64
    kept tile tokens and all 40 newlines, in the order of the model's own packing."""
    image = scene(640, 480, seed=5)
    press = PruneSID(budget=64)
    pixels = vlm.family.preprocess(image)
    with torch.inference_mode():
        full = vlm.model.model.get_image_features(pixels["pixel_values"], pixels["image_sizes"]).pooler_output[0]
    embeds, reply = fed_to_language_model(vlm, lambda: vlm.chat(image, QUESTION, press=press, max_new_tokens=1))
    prepared = vlm.prepare(image, QUESTION, press)
    fed = embeds[0][prepared.input_ids[0] == vlm.model.config.image_token_id]
    assert reply.visual_tokens == [360] and fed.shape[0] == 360 == vlm.fed_tokens(image.size, press)
    selection = reply.selections[0]
    assert [int(index.numel()) for index in selection.indices] == [64] * 5
    torch.testing.assert_close(fed[:64], full[:VIEW][selection.indices[0].cpu()])  # base view, in the press's order
    # The rest is an ordered subsequence of the model's packed grid (row-major, newline per row).
    grid, newline = full[VIEW:], vlm.model.model.image_newline
    position, newlines = 0, 0
    for row in fed[64:]:
        while not torch.equal(grid[position], row):
            position += 1
        newlines += int(torch.equal(row, newline))
        position += 1
    assert newlines == 40
    encoded = vlm.encode(image)
    kept = torch.cat([encoded.features[view][index.cpu()] for view, index in enumerate(selection.indices) if view])
    tiles = fed[64:][~(fed[64:] == newline).all(1)]
    assert tiles.shape[0] == 256 and {tuple(r.tolist()) for r in tiles} == {tuple(r.tolist()) for r in kept}


def test_every_press_feeds_the_same_count_and_visionzip_refuses(vlm):
    image = scene(640, 480, seed=6)
    counts = {}
    for name, cls in presses().items():
        press = cls(budget=64)
        if name == "visionzip":
            with pytest.raises(ValueError, match="cannot run on this model: it needs the CLS token's attention"):
                vlm.fed_tokens(image.size, press)
            with pytest.raises(ValueError, match="CLS"):
                vlm.chat(image, QUESTION, press=press, max_new_tokens=1)
            continue
        counts[name] = vlm.chat(image, QUESTION, press=press, max_new_tokens=1).visual_tokens[0]
    assert set(counts) >= {"prunesid", "divprune", "random", "uniform"} and set(counts.values()) == {360}


def test_prunesid_dyn_shares_the_budget_across_images_views_and_frames(vlm, short_clip):
    first, second = scene(640, 480, seed=7), scene(300, 700, seed=8)
    dynamic = PruneSID(budget=64, dynamic=True)
    reply = vlm.chat([first, second, short_clip], "Compare.", press=dynamic, max_new_tokens=1)
    budgets = [selection.budget.tolist() for selection in reply.selections]
    assert [len(b) for b in budgets] == [5, 3, 6]  # views: base + 4 tiles, base + 2 tiles, 6 frames
    flat = sum(budgets, [])
    assert sum(flat) == 64 * len(flat) and len(set(flat)) > 1  # N' follows each view's phi, N on average
    kept = [[int(index.numel()) for index in selection.indices] for selection in reply.selections]
    assert kept == budgets
    rows = [vlm.family.layout.fed_shape(image.size)[0] for image in (first, second)]
    assert reply.visual_tokens == [sum(kept[0]) + rows[0], sum(kept[1]) + rows[1], sum(kept[2]) + 1]
    with pytest.raises(ValueError, match="cannot be known before encoding"):
        vlm.fed_tokens(first.size, dynamic)


# --- several images in one sample, press_applied ------------------------------------------


def test_press_applied_follows_the_processors_grouping_of_images(vlm):
    """A nested image list is one sample of several images: the model feeds each as one square
    view + newline (730); a flat list tiles each. press_applied keeps to either."""
    first, second = scene(640, 480, seed=9), scene(300, 700, seed=10)
    text = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]}],
        add_generation_prompt=True, tokenize=False,
    )
    for images, unmodified, at_64 in (([[first, second]], [730, 730], [65, 65]), ([first, second], [2929, 2025], [360, 246])):
        inputs = vlm.processor(images=images, text=text, return_tensors="pt")
        with torch.inference_mode():
            expected = vlm.model(**inputs).logits
        with press_applied(vlm.model, vlm.processor, KEEP_ALL) as applied, torch.inference_mode():
            logits = vlm.model(**inputs).logits
        assert applied.visual_tokens == unmodified
        torch.testing.assert_close(logits[:, -1], expected[:, -1], rtol=1e-4, atol=1e-5)
        with press_applied(vlm.model, vlm.processor, PruneSID(budget=64)) as applied:
            output = vlm.model.generate(**inputs, max_new_tokens=2)
        assert applied.visual_tokens == at_64 and output.shape[1] == inputs["input_ids"].shape[1] + 2


def test_press_applied_compresses_a_clip(vlm, short_clip):
    text = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}], add_generation_prompt=True, tokenize=False
    )
    inputs = vlm.processor(videos=_frames(short_clip), text=text, return_tensors="pt")
    with press_applied(vlm.model, vlm.processor, PruneSID(budget=32)) as applied:
        vlm.model.generate(**inputs, max_new_tokens=1)
    assert applied.visual_tokens == [6 * 32 + 1]


def test_frames_without_torchvision_are_the_image_processors_base_view(vlm, short_clip):
    """ResizedFramesVideoProcessor: each frame resized to 384 x 384, rescaled and normalised as
    the image processor makes an image's base view; the video config's mean and std are used."""
    from prunesid.family_kit.processors import ResizedFramesVideoProcessor

    video_processor = vlm.processor.video_processor
    assert isinstance(video_processor, ResizedFramesVideoProcessor)
    frame = short_clip.frames[2]
    pixels = video_processor(videos=_frames(short_clip), return_tensors="pt")["pixel_values_videos"]
    base_view = vlm.processor.image_processor(images=frame, return_tensors="pt")["pixel_values"][0, 0]
    torch.testing.assert_close(pixels[0, 2], base_view, rtol=0, atol=1e-6)
    plain = ResizedFramesVideoProcessor(vlm.processor.image_processor, {"image_mean": [0, 0, 0], "image_std": [1, 1, 1]})
    torch.testing.assert_close(plain(videos=_frames(short_clip))["pixel_values_videos"][0, 2], base_view * 0.5 + 0.5, rtol=0, atol=1e-6)


# --- loading ------------------------------------------------------------------------------


def test_the_hub_layout_directory_loads_with_load_vlm(vlm, tmp_path):
    source = builtin_directory(NAME)
    files = {path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "video_processor/preprocessor_config.json", "processor_config.json",
            "chat_template.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} <= files
    config = json.loads((source / "config.json").read_text())
    assert config["model_type"] == "llava_onevision" and config["vision_feature_select_strategy"] == "full"
    assert config["vision_aspect_ratio"] == "anyres_max_9" and len(config["image_grid_pinpoints"]) == 36
    assert {"image_token_index", "video_token_index"} <= set(config)
    assert json.loads((source / "processor_config.json").read_text())["num_image_tokens"] == VIEW
    copy = tmp_path / "llava-onevision-qwen2-0.5b-ov-hf"
    shutil.copytree(source, copy)
    loaded = load_vlm(str(copy))
    assert type(loaded.family) is type(vlm.family)
    image = scene(500, 400, seed=11)
    built, reloaded = (model.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=4) for model in (vlm, loaded))
    assert (reloaded.text, reloaded.visual_tokens) == (built.text, built.visual_tokens)
    for a, b in zip(vlm.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_bad_newlines_layout_is_named():
    with pytest.raises(ValueError, match="newlines must be one of"):
        load_vlm(NAME, newlines="columns")


def test_the_command_line_answers_about_an_image_and_a_clip(tmp_path, capsys):
    from prunesid import cli

    scene(640, 480, seed=12).save(tmp_path / "scene.png")
    for media, tokens in ((str(tmp_path / "scene.png"), [5 * 16 + 40]), (str(CLIP), [32 * 16 + 1])):
        argv = ["chat", media, "What?", "--model", NAME, "--budget", "16", "--max-new-tokens", "1", "--json"]
        assert cli.main(argv) == 0
        assert json.loads(capsys.readouterr().out)["visual_tokens"] == tokens
