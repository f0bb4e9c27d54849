"""Where the plug-in reads an image's size and a request's tiling (no engine here): LLaVA-NeXT's
views in (height, width) order as vLLM gives ``image_sizes``, InternVL's ``crop_to_patches``.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from test_front_end_counts import BUDGET, _config, _info


@pytest.fixture(scope="module")
def next_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-next"))


@pytest.fixture(scope="module")
def internvl_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-internvl"))


@pytest.mark.parametrize("size", [(300, 500), (500, 300), (700, 300)])
def test_next_presses_among_the_patches_of_the_image_as_vllm_sizes_it(next_checkpoint, monkeypatch, size):
    """Bug caught: ``_pressed_image`` reading vLLM's ``image_sizes`` (height, width) as
    (width, height): the view count is the same either way (the pinpoints are symmetric), but
    the unpadded patches and the tiles' boxes of a tall image are those of a wide one."""
    import prunesid.families.llava_next.vllm_model as plugin

    engine = plugin.engine_press(_config(next_checkpoint))
    layout = engine.layout
    width, height = size
    views = len(layout.selectable_tokens(size))
    tokens = layout.side * layout.side
    seen = {}

    def tower(_, pixels):
        count = pixels.shape[0]
        generator = torch.Generator().manual_seed(0)
        return torch.randn(count, tokens, 8, generator=generator), torch.randn(count, 8), torch.rand(count, tokens), torch.randn(count, tokens, 4)

    monkeypatch.setattr(plugin, "encode_tower", tower)
    monkeypatch.setattr(plugin, "pressed_embeddings", lambda family, encoded, press: seen.setdefault("encoded", encoded))
    stub = SimpleNamespace(engine_press=engine, vision_tower=None, press_family=None)
    pixels = torch.zeros(views + 2, 3, 4, 4)  # vLLM pads the views of a batch to the most any image has
    plugin.PruneSIDLlavaNextForConditionalGeneration._pressed_image(stub, pixels, (height, width))
    encoded = seen["encoded"]
    assert encoded.image.size == size and encoded.num_views == views
    assert torch.equal(encoded.valid, layout.valid_patches(size))
    assert [grid.box for grid in encoded.grids] == [grid.box for grid in layout.grids(size)]
    if width != height:
        assert not torch.equal(layout.valid_patches(size), layout.valid_patches((height, width)))


def test_internvl_without_crop_to_patches_is_one_view(internvl_checkpoint):
    """Bug caught: ``processor_tiling`` ignoring a request's ``crop_to_patches=False`` (the
    image still sized as 4 x 3 tiles + thumbnail while the processor cuts one view)."""
    from prunesid.families.internvl.vllm_model import PressedInternVLInfo, _library_processor, processor_tiling

    processor = _library_processor(internvl_checkpoint)
    assert processor_tiling(processor, {"crop_to_patches": False}) == (1, 1)
    assert processor_tiling(processor, {"crop_to_patches": True}) == (1, 12)
    context = SimpleNamespace(get_merged_mm_kwargs=lambda kwargs: dict(kwargs))
    info = _info(PressedInternVLInfo, _config(internvl_checkpoint), ctx=context)
    assert info.get_num_image_tokens(image_width=640, image_height=480, processor=processor, mm_kwargs={"crop_to_patches": False}) == BUDGET
    unmodified = processor(images=[Image.new("RGB", (640, 480))], text="<image>", crop_to_patches=False, return_tensors="pt")
    assert unmodified["pixel_values"].shape[0] == 1  # what the processor cuts: one view


def test_next_front_end_counts_read_width_then_height(next_checkpoint):
    """Bug caught: ``get_num_image_tokens`` passing (height, width) to the layout. With the
    checkpoint's symmetric pinpoints a swap gives the same count, so here the pinpoints are
    one wide option and one square: a 700 x 300 image is base + 1 x 2 tiles, 300 x 700 is
    base + 2 x 2."""
    from prunesid.families.llava_next.vllm_model import PressedLlavaNextInfo

    side = _config(next_checkpoint).vision_config.image_size
    config = _config(next_checkpoint, image_grid_pinpoints=[[side, 2 * side], [2 * side, 2 * side]])
    info = _info(PressedLlavaNextInfo, config)
    assert info.get_num_image_tokens(image_width=700, image_height=300) == 3 * BUDGET
    assert info.get_num_image_tokens(image_width=300, image_height=700) == 5 * BUDGET


def test_next_settings_the_layout_cannot_serve_are_refused_by_name(next_checkpoint):
    """Bugs caught: the refusal of a tower that is not CLIP losing its text or the tower's
    name (read from nothing, or from a mangled attribute), and a checkpoint without PruneSID
    settings failing with an AttributeError instead of saying so."""
    import copy

    import prunesid.families.llava_next.vllm_model as plugin

    config = _config(next_checkpoint)
    siglip = copy.deepcopy(config)
    siglip.vision_config.model_type = "siglip_vision_model"
    with pytest.raises(ValueError, match=r"^prunesid: the vLLM plug-in supports LLaVA-NeXT with a CLIP tower, this model's is 'siglip_vision_model'$"):
        plugin.engine_press(siglip)
    unset = copy.deepcopy(config)
    delattr(unset, "prunesid")
    with pytest.raises(ValueError, match="sets no prunesid settings"):
        plugin.engine_press(unset)


def test_next_image_embeddings_sent_by_a_client_reach_the_language_model_as_sent():
    """Bug caught: LLaVA-NeXT's engine reading image embeddings (enable_mm_embeds) under another
    key than vLLM's ``data``: every request with embeddings fails."""
    from vllm.model_executor.models.llava_next import LlavaNextImageEmbeddingInputs

    from prunesid.families.llava_next import vllm_model as plugin

    embeds = torch.randn(2, 5, 8)
    sent = LlavaNextImageEmbeddingInputs(type="image_embeds", data=embeds)
    stub = SimpleNamespace(engine_press=None, vision_tower=None, press_family=None)
    assert plugin.PruneSIDLlavaNextForConditionalGeneration._process_image_input(stub, sent) is embeds


@pytest.mark.parametrize(("size", "patch", "expected"), [
    (448, 14, (448, 16)),  # InternVL3: 32 patches a side, shuffled by 2
    ([448, 448], [14, 14], (448, 16)),
    (449, 14, (449, 16)),  # a side the patches do not divide: the tower's conv floors it to 32
])
def test_internvl_tiles_and_their_tokens_per_side(size, patch, expected):
    from prunesid.families.internvl.vllm_model import _tile_and_side

    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=size, patch_size=patch), downsample_ratio=0.5)
    assert _tile_and_side(config) == expected


@pytest.mark.parametrize(("size", "patch", "message"), [
    ([448, 336], 14, r"InternVL tiles are square, this model's are \[448, 336\] with patches \[14, 14\]"),
    (448, [14, 16], r"InternVL tiles are square, this model's are \[448, 448\] with patches \[14, 16\]"),
])
def test_internvl_tiles_that_are_not_square_are_refused_by_size(size, patch, message):
    """Bug caught: a non-square patch size read as square (one side compared with itself)."""
    from prunesid.families.internvl.vllm_model import _tile_and_side

    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=size, patch_size=patch), downsample_ratio=0.5)
    with pytest.raises(ValueError, match=message):
        _tile_and_side(config)


@pytest.mark.parametrize(("columns", "levels"), [(8, None), (24, 2)])
def test_qwen3_vl_deepstack_levels_are_none_when_the_tower_returns_none(columns, levels):
    """Bug caught: a tower without deepstack levels handing back an empty tensor for them (the
    language model then adds nothing where vLLM expects no levels at all)."""
    from prunesid.families.qwen_vl.vllm_models.qwen3_vl import deepstack_tower

    output = torch.arange(5.0 * columns).reshape(5, columns)
    model = SimpleNamespace(visual=lambda pixels, grid_thw: output, visual_dim=8)
    merged, stacked = deepstack_tower(model, torch.zeros(20, 3), [1, 4, 5])
    assert torch.equal(merged, output[:, :8])
    if levels is None:
        assert stacked is None
    else:
        assert torch.equal(stacked, output[:, 8:]) and stacked.shape[1] == levels * 8


@pytest.mark.parametrize("newlines", ["rows", "authors"])
def test_onevision_s_clip_layout_changes_the_frame_count_only(newlines):
    from prunesid.families.llava_onevision.adapter import OneVisionLayout
    from prunesid.families.llava_onevision.vllm_model import clip_layout

    image = OneVisionLayout([[384, 384], [384, 768]], 384, 27, 9, 1, newlines)
    clip = clip_layout(image, 12)
    assert clip.frames == 12 and image.frames == 1
    assert (clip.pinpoints, clip.tile_size, clip.side, clip.max_tiles, clip.newlines) == (image.pinpoints, 384, 27, 9, newlines)


def test_llava_with_another_tower_is_refused_by_its_type(checkpoint):
    """Bug caught: the refusal's message itself failing (a TypeError instead of the words)."""
    from prunesid.families.llava.vllm_model import engine_press

    with pytest.raises(ValueError, match=r"^prunesid: the vLLM plug-in supports LLaVA with a CLIP tower, this model's is 'siglip_vision_model'$"):
        engine_press(_config(checkpoint, **{"vision_config.model_type": "siglip_vision_model"}))


def test_llava_image_embeddings_sent_by_a_client_reach_the_language_model_as_sent():
    """Bug caught: LLaVA's engine reading sent image embeddings under another key than ``data``."""
    from vllm.model_executor.models.llava import LlavaImageEmbeddingInputs

    from prunesid.families.llava import vllm_model as plugin

    embeds = torch.randn(2, 5, 8)
    sent = LlavaImageEmbeddingInputs(type="image_embeds", data=embeds)
    stub = SimpleNamespace(engine_press=None, vision_tower=None, press_family=None)
    assert plugin.PruneSIDLlavaForConditionalGeneration._process_image_input(stub, sent) is embeds
