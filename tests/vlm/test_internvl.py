"""InternVL3 on the offline tiny-random-internvl (real geometry: 448 px tiles of 32 x 32 patches
+ CLS, 2 x 2 pixel shuffle to 256 tokens per tile, 1-12 tiles plus a thumbnail): keeping
everything reproduces the unmodified model fed by its own processor (one tiled image, two
images, a clip, both), at N = 64 the LLM receives exactly views x 64 tokens, the projector's
output of the shuffled tokens at the kept indices, and the importance is the CLS attention
of the feature layer averaged over each 2 x 2 block."""

from __future__ import annotations

import json

import pytest
import torch

from prunesid import PruneSID, load_vlm
from prunesid.methods.registry import presses
from prunesid.pipeline import press_applied
from prunesid.video import Video
from prunesid.vlm import wrap
from prunesid.family_kit import builtin_directory
from tests.conftest import scene

QUESTION = "What is in the picture?"
KEEP_ALL = PruneSID(budget=100000, keep_cls=False, order="spatial")
TOKENS_PER_VIEW = 256


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("tiny-random-internvl")


@pytest.fixture(scope="module")
def wide():
    return scene(900, 450, seed=3)  # 2 x 1 tiles + thumbnail: 3 views


@pytest.fixture(scope="module")
def clip():
    return Video.from_frames([scene(320, 240, seed=frame) for frame in range(3)])


def _processor_inputs(vlm, content, images=None, videos=None):
    """What the unmodified model receives: the checkpoint's own processor on the chat text."""
    text = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    return vlm.processor(text=[text], images=images, videos=videos, return_tensors="pt")


def _logits(vlm, **inputs):
    with torch.inference_mode():
        return vlm.model(**inputs).logits


def _greedy(vlm, **inputs):
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_the_geometry_is_internvl3s(vlm, wide):
    config = vlm.model.config
    assert config.model_type == "internvl" and config.downsample_ratio == 0.5 and config.vision_feature_layer == -1
    assert tuple(config.vision_config.image_size) == (448, 448) and tuple(config.vision_config.patch_size) == (14, 14)
    assert type(vlm.model.model.language_model).__name__ == "Qwen2Model"
    encoded = vlm.encode(scene(640, 480, seed=1))
    # 640 x 480 is exactly 4:3: 4 x 3 tiles of 448 px, then the thumbnail.
    assert encoded.pixel_inputs["pixel_values"].shape == (13, 3, 448, 448)
    assert tuple(encoded.features.shape) == (13, TOKENS_PER_VIEW, 4 * config.vision_config.hidden_size)
    assert encoded.cls is None and not vlm.family.cls_slot
    labels = [grid.label for grid in encoded.grids]
    assert labels == [f"tile {row},{col}" for row in range(3) for col in range(4)] + ["thumbnail"]
    assert encoded.grids[5].box == pytest.approx((160.0, 160.0, 320.0, 320.0))  # tile 1,1 of a 4 x 3 split
    assert all((grid.rows, grid.cols) == (16, 16) for grid in encoded.grids)
    assert vlm.unmodified_visual_tokens(encoded) == 13 * 256 == vlm.fed_tokens((640, 480))
    assert vlm.encode(wide).num_views == 3 and vlm.encode(scene(300, 300, seed=2)).num_views == 1  # one tile: no thumbnail
    # The layout, from the size alone, agrees: 3 and 1 views (a 1 x 1 grid has no thumbnail).
    assert vlm.fed_tokens(wide.size) == 3 * 256 and vlm.fed_tokens((300, 300)) == 256


def test_the_tokens_are_the_models_shuffled_tower_tokens(vlm, wide):
    """features = the model's own get_image_features before its projector (CLS dropped, 2 x 2
    pixel shuffle), and projecting them gives its image features exactly."""
    encoded = vlm.encode(wide)
    pixels = encoded.pixel_inputs["pixel_values"]
    with torch.inference_mode():
        expected = vlm.model.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
        projected = vlm.family.project(encoded.features.flatten(0, 1)).view_as(expected)
    torch.testing.assert_close(projected, expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # the quick tier keeps this family's geometry, importance and N = 64 tests
def test_keeping_everything_is_the_unmodified_model_on_a_tiled_image(vlm, wide):
    reference = _processor_inputs(vlm, [{"type": "image"}, {"type": "text", "text": QUESTION}], images=[wide])
    prepared = vlm.prepare(wide, QUESTION, KEEP_ALL)
    # The laid-out prompt is the processor's, token for token: <img>, 3 x 256 placeholders, </img>.
    assert torch.equal(prepared.input_ids, reference["input_ids"])
    assert prepared.visual_tokens == [3 * TOKENS_PER_VIEW]
    unmodified = dict(input_ids=reference["input_ids"], pixel_values=reference["pixel_values"])
    torch.testing.assert_close(_logits(vlm, input_ids=prepared.input_ids, **prepared.model_inputs), _logits(vlm, **unmodified), rtol=0, atol=1e-5)
    assert _greedy(vlm, input_ids=prepared.input_ids, **prepared.model_inputs) == _greedy(vlm, **unmodified)
    reply = vlm.chat(wide, QUESTION, press=KEEP_ALL, max_new_tokens=6)
    assert reply.text == vlm.chat(wide, QUESTION, press=None, max_new_tokens=6).text
    assert reply.text == vlm.processor.tokenizer.decode(_greedy(vlm, **unmodified), skip_special_tokens=True)


@pytest.mark.slow  # the quick tier keeps this family's geometry, importance and N = 64 tests
def test_keeping_everything_is_the_unmodified_model_on_two_images_and_a_clip(vlm, wide, clip):
    small = scene(300, 300, seed=4)
    content = [{"type": "image"}, {"type": "video"}, {"type": "image"}, {"type": "text", "text": QUESTION}]
    reference = _processor_inputs(vlm, content, images=[wide, small], videos=[list(clip.frames)])
    prepared = vlm.prepare([wide, clip, small], QUESTION, KEEP_ALL)
    # Frames as the processor writes them: "Frame1: <img>...</img>\nFrame2: ...", then the second image.
    assert torch.equal(prepared.input_ids, reference["input_ids"])
    assert prepared.visual_tokens == [768, 3 * 256, 256]
    assert int((prepared.input_ids == vlm.model.config.image_token_id).sum()) == 768 + 768 + 256
    unmodified = dict(input_ids=reference["input_ids"], pixel_values=reference["pixel_values"])
    torch.testing.assert_close(_logits(vlm, input_ids=prepared.input_ids, **prepared.model_inputs), _logits(vlm, **unmodified), rtol=0, atol=1e-5)
    assert _greedy(vlm, input_ids=prepared.input_ids, **prepared.model_inputs) == _greedy(vlm, **unmodified)


def test_a_clip_is_frames_of_one_view_each(vlm, clip):
    encoded = vlm.encode(clip)
    assert encoded.modality == "video" and encoded.num_views == 3
    assert encoded.pixel_inputs["pixel_values"].shape == (3, 3, 448, 448)
    assert [grid.label for grid in encoded.grids] == ["frame 1", "frame 2", "frame 3"]
    assert vlm.family.num_frames == 8 and vlm.fed_tokens((320, 240), None, "video") == 8 * 256
    assert vlm.fed_tokens((320, 240), PruneSID(budget=16), "video") == 8 * 16
    prepared = vlm.prepare(clip, QUESTION, PruneSID(budget=16))
    ids = prepared.input_ids[0]
    start = vlm.processor.tokenizer.convert_tokens_to_ids("<img>")
    assert prepared.visual_tokens == [3 * 16] and int((ids == start).sum()) == 3
    # No <video> token reaches the model: every frame run is the image placeholder.
    assert int((ids == vlm.family.video_token_id).sum()) == 0
    assert int((ids == vlm.model.config.image_token_id).sum()) == 48


def test_at_n64_the_llm_receives_views_times_64_of_the_projected_kept_tokens(vlm):
    image = scene(640, 480, seed=1)
    press = PruneSID(budget=64)
    assert vlm.fed_tokens(image.size, press) == 13 * 64 == 832
    prepared = vlm.prepare(image, QUESTION, press)
    assert prepared.visual_tokens == [832] == [int((prepared.input_ids == vlm.model.config.image_token_id).sum())]
    encoded = vlm.encode(image)
    compression = prepared.compressions[0]
    kept = torch.cat([encoded.features[view, index] for view, index in enumerate(compression.indices)])
    assert [int(index.numel()) for index in compression.indices] == [64] * 13
    torch.testing.assert_close(prepared.runs[0].embeds, vlm.family.project(kept), rtol=0, atol=0)
    origin = torch.cat([view * 256 + index.long() for view, index in enumerate(compression.indices)])
    assert torch.equal(prepared.runs[0].origin, origin)


def test_importance_is_the_cls_attention_averaged_over_each_block(vlm, wide):
    """The eager attention weights of the last InternViT layer (the feature layer), CLS row,
    summed over heads, averaged over every 2 x 2 block of patches: computed here from the
    tower's own attention output, with no code of the library."""
    tower = vlm.model.model.vision_tower
    encoded = vlm.encode(wide)
    pixels = encoded.pixel_inputs["pixel_values"]
    before = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            attentions = tower(pixel_values=pixels, output_attentions=True, return_dict=True).attentions
    finally:
        tower.set_attn_implementation(before)
    cls_row = attentions[-1][:, :, 0, 1:].sum(dim=1)  # [V, 1024]: CLS to every patch
    blocks = cls_row.view(-1, 16, 2, 16, 2).mean(dim=(2, 4)).reshape(-1, 256)
    torch.testing.assert_close(encoded.importance, blocks, rtol=0, atol=1e-6)
    assert float(blocks.std()) > 0  # the random tower's CLS does attend unevenly
    assert tuple(encoded.keys.shape) == (3, 256, tower.config.hidden_size // tower.config.num_attention_heads)


@pytest.mark.slow  # every press on 13 views; the contract tests repeat it for every built-in
@pytest.mark.parametrize("budget", [16, 64])
def test_every_press_feeds_the_same_count(vlm, budget):
    image = scene(640, 480, seed=1)
    counts = {name: vlm.prepare(image, QUESTION, cls(budget=budget)).visual_tokens[0] for name, cls in presses().items()}
    assert len(counts) >= 4 and set(counts.values()) == {13 * budget} == {vlm.fed_tokens(image.size, cls(budget=budget)) for cls in presses().values()}


def test_the_dynamic_budget_is_shared_across_images_and_tiles(vlm, wide):
    image = scene(640, 480, seed=1)
    reply = vlm.chat([image, wide], QUESTION, press=PruneSID(budget=64, dynamic=True), max_new_tokens=1)
    budgets = [selection.budget.tolist() for selection in reply.selections]
    assert [len(b) for b in budgets] == [13, 3]
    assert sum(map(sum, budgets)) == 16 * 64 == sum(reply.visual_tokens)
    assert len({n for b in budgets for n in b}) > 1  # views get different budgets by their phi
    assert all(32 <= n <= 128 for b in budgets for n in b)


@pytest.mark.slow  # the quick tier keeps this family's geometry, importance and N = 64 tests
def test_press_applied_on_the_processors_output(vlm, wide, clip):
    content = [{"type": "image"}, {"type": "video"}, {"type": "text", "text": QUESTION}]
    inputs = _processor_inputs(vlm, content, images=[wide], videos=[list(clip.frames)])
    expected = _logits(vlm, input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    with press_applied(vlm.model, vlm.processor, KEEP_ALL) as applied:
        logits = _logits(vlm, input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert applied.visual_tokens == [768, 3 * 256]  # the runs labelled Frame1..3 are one clip
    with press_applied(vlm.model, vlm.processor, PruneSID(budget=64)) as applied:
        out = vlm.model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert applied.visual_tokens == [3 * 64, 3 * 64] and out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_the_hub_layout_directory_loads_and_answers_alike(vlm, wide):
    directory = builtin_directory("tiny-random-internvl")
    files = {path.name for path in directory.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json",
            "chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} <= files
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "internvl" and config["text_config"]["model_type"] == "qwen2"
    preprocessor = json.loads((directory / "preprocessor_config.json").read_text())
    assert preprocessor["image_processor_type"] == "GotOcr2ImageProcessorFast" and preprocessor["processor_class"] == "InternVLProcessor"
    assert preprocessor["size"] == {"height": 448, "width": 448} and preprocessor["max_patches"] == 12
    loaded = load_vlm(str(directory))
    assert loaded.processor.tokenizer.context_image_token == "<IMG_CONTEXT>" and loaded.processor.image_seq_length == 256
    press = PruneSID(budget=32)
    assert loaded.chat(wide, QUESTION, press=press, max_new_tokens=4).text == vlm.chat(wide, QUESTION, press=press, max_new_tokens=4).text


def test_unsupported_configurations_are_named(vlm):
    config = vlm.model.config
    config.vision_feature_select_strategy = "full"
    try:
        with pytest.raises(ValueError, match="vision_feature_select_strategy 'full' is not supported"):
            wrap(vlm.model, vlm.processor, name="full")
    finally:
        config.vision_feature_select_strategy = "default"
    with pytest.raises(ValueError, match="no image of this model is cut into 2 views"):
        vlm.family.layout.size_for_views(2)


def test_the_command_line_runs_the_built_in(tmp_path, capsys):
    from prunesid import cli

    scene(640, 480, seed=1).save(tmp_path / "scene.png")
    argv = ["chat", str(tmp_path / "scene.png"), "What?", "--model", "tiny-random-internvl", "--budget", "16", "--max-new-tokens", "1", "--json"]
    assert cli.main(argv) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["visual_tokens"] == [13 * 16]
    assert [view["label"] for view in reply["selection"]][-2:] == ["tile 2,3", "thumbnail"]
