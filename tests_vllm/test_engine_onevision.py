"""LLaVA-OneVision in the engine: per image N tokens per view (the base view and every
anyres tile that keeps tokens) plus one newline per row of the fed tile grid; per clip
N per frame plus its newline; and per view the tokens the library keeps on the same
checkpoint. Settings the layout cannot serve stop the engine at start, named."""

from __future__ import annotations

import gc
import json
import os
import re

import numpy as np
import pytest
import torch
from transformers.image_processing_utils import select_best_resolution

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press
from prunesid.video import Video
from prunesid.vllm import engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]
FRAMES = [np.asarray(pattern((320, 240), seed)) for seed in range(4)]
PROMPT = "<|im_start|>user\n<image>\n<image>\nCompare them.<|im_end|>\n<|im_start|>assistant\n"
CLIP_PROMPT = "<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"
EMBEDS_PROMPT = "<|im_start|>user\n<image>\n<image>\nAnd these?<|im_end|>\n<|im_start|>assistant\n"
TILE, SIDE, FRAME_TOKENS = 384, 27, 196  # 384 px tiles of 27 x 27 patches; a frame pooled to 14 x 14


@pytest.fixture(scope="module")
def onevision_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-llava-onevision"))


@pytest.fixture(scope="module", autouse=True)
def processor_without_torchvision():
    """transformers' OneVision processor loads a video processor that needs torchvision, which
    this environment lacks: the engine's front end (in this process) gets the library's own
    processor without it (the same image processing, PIL backend; clips resized frame by frame)."""
    import transformers

    from prunesid.family_kit.processors import load_processor, torchvision_available

    if torchvision_available():
        yield
        return
    processor_class = transformers.LlavaOnevisionProcessor
    processor_class.from_pretrained = classmethod(lambda cls, path, *args, **kwargs: load_processor(str(path), "llava_onevision"))
    try:
        yield
    finally:
        del processor_class.from_pretrained  # ProcessorMixin's again


@pytest.fixture(scope="module")
def library(onevision_checkpoint):
    from prunesid import load_vlm

    vlm = load_vlm(onevision_checkpoint, dtype="float32")
    return vlm, [vlm.encode(image) for image in IMAGES], vlm.encode(Video.from_frames(FRAMES))


def tile_views(size: tuple[int, int]) -> tuple[list[int], int]:
    """From the image size alone: the tokens each view may keep (the base view, then each
    tile the unpadded band touches) and the rows of the fed tile grid (no downscale here)."""
    width, height = size
    best_h, best_w = select_best_resolution((height, width), [[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)])
    grid_h, grid_w = best_h // TILE * SIDE, best_w // TILE * SIDE
    if width / height > grid_w / grid_h:  # wider than the grid: unpadding drops rows above and below
        pad = (grid_h - int(round(height * grid_w / width, 7))) // 2
        rows, cols = range(pad, grid_h - pad), range(grid_w)
    else:
        pad = (grid_w - int(round(width * grid_h / height, 7))) // 2
        rows, cols = range(grid_h), range(pad, grid_w - pad)
    assert len(rows) * len(cols) <= 1.1**2 * 9 * SIDE**2  # below anyres_max_9's downscale
    per_tile = [
        sum(r // SIDE == tile_row for r in rows) * sum(c // SIDE == tile_col for c in cols)
        for tile_row in range(grid_h // SIDE) for tile_col in range(grid_w // SIDE)
    ]
    return [SIDE * SIDE] + [n for n in per_tile if n], len(rows)


def test_the_test_images_tile_as_expected():
    assert tile_views((640, 480)) == ([729, 540, 540, 540, 540], 40)  # 768 x 768: 2 x 2 tiles, 40 of 54 rows kept
    assert tile_views((300, 500)) == ([729, 621, 621], 46)  # 384 x 768: 1 x 2 tiles, 46 of 54 rows kept


@pytest.mark.parametrize(("method", "budget"), [("prunesid", 16), ("divprune", 64)])
def test_onevision_feeds_views_times_n_plus_row_newlines_and_keeps_what_the_library_keeps(onevision_checkpoint, library, method, budget, tmp_path):
    from vllm import LLM, SamplingParams

    vlm, encoded, clip = library
    press = build_press(method, {"budget": budget})
    expected = [sum(min(budget, n) for n in views) + rows for views, rows in map(tile_views, (image.size for image in IMAGES))]
    assert [vlm.fed_tokens(image.size, press) for image in IMAGES] == expected
    assert [item.num_views for item in encoded] == [len(tile_views(image.size)[0]) for image in IMAGES]
    hidden = vlm.model.config.text_config.hidden_size
    sent = [torch.randn(30, hidden), torch.randn(50, hidden)]  # the embeddings route: two lengths in one batch
    args = {**ENGINE_ARGS, "max_model_len": 4096, "limit_mm_per_prompt": {"image": 2, "video": 1}, "enable_mm_embeds": True}
    llm = LLM(model=onevision_checkpoint, hf_overrides=engine_overrides("llava_onevision", method, budget), **args)
    greedy = SamplingParams(max_tokens=2, temperature=0.0)
    try:
        tokenizer = llm.get_tokenizer()
        records = {name: tmp_path / f"{name}.jsonl" for name in ("images", "clip", "sent")}
        outputs = {}
        for name, request in [
            ("images", {"prompt": PROMPT, "multi_modal_data": {"image": IMAGES}}),
            ("clip", {"prompt": CLIP_PROMPT, "multi_modal_data": {"video": np.stack(FRAMES)}}),
            ("sent", {"prompt": EMBEDS_PROMPT, "multi_modal_data": {"image": sent}}),
        ]:
            os.environ[RECORD_ENV] = str(records[name])
            [outputs[name]] = llm.generate(request, greedy)
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    image_token, video_token = (tokenizer.convert_tokens_to_ids(token) for token in ("<image>", "<video>"))

    ids = outputs["images"].prompt_token_ids
    assert sum(token == image_token for token in ids) == sum(expected)
    assert len(ids) == len(tokenizer.encode(PROMPT)) - 2 + sum(expected)
    kept = [json.loads(line) for line in records["images"].read_text().splitlines()]
    assert sorted(item["fed"] for item in kept) == sorted(expected)
    library_kept = [[index.tolist() for index in vlm.compress([item], press)[0].indices] for item in encoded]
    assert sorted(item["indices"] for item in kept) == sorted(library_kept)

    frames = len(FRAMES) * min(budget, FRAME_TOKENS) + 1  # N per pooled frame, then the clip's newline
    assert sum(token == video_token for token in outputs["clip"].prompt_token_ids) == frames
    [clip_kept] = [json.loads(line) for line in records["clip"].read_text().splitlines()]
    [clip_compression] = vlm.compress([clip], press)
    assert clip_kept["fed"] == int(vlm.visual_run(clip, clip_compression).embeds.shape[0])
    assert clip_kept["indices"] == [index.tolist() for index in clip_compression.indices]

    # Sent embeddings reach the language model as they are: 30 + 50 tokens, no press run.
    assert sum(token == image_token for token in outputs["sent"].prompt_token_ids) == 80
    assert not records["sent"].exists()


def _config(checkpoint: str, settings):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    if settings is not None:
        config.prunesid = settings
    return config


@pytest.mark.parametrize("size", [(640, 480), (300, 500), (1153, 944), (2000, 600), (500, 2400), (2304, 2304), (384, 384)])
def test_a_press_keeping_every_token_feeds_what_vllm_feeds_unmodified(onevision_checkpoint, size):
    """The layout's newlines are the model's own (one per fed row): keeping every token
    feeds vLLM's own count for the unmodified model, downscaled sizes included."""
    from transformers.models.llava_onevision.modeling_llava_onevision import get_anyres_image_grid_shape
    from vllm.model_executor.models.llava_onevision import LlavaOnevisionProcessingInfo

    from prunesid.families.llava_onevision.vllm_model import engine_press

    config = _config(onevision_checkpoint, {"method": "uniform", "budget": SIDE * SIDE})
    width, height = size
    tile_rows, tile_cols = get_anyres_image_grid_shape((height, width), config.image_grid_pinpoints, TILE)
    unpadded, newlines = LlavaOnevisionProcessingInfo._get_num_unpadded_features(
        None, original_height=height, original_width=width, npatches=SIDE, num_patch_height=tile_rows, num_patch_width=tile_cols,
    )
    assert engine_press(config).fed_tokens(size) == SIDE * SIDE + unpadded + newlines


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "visionzip", "budget": 64}, "prunesid.method 'visionzip': VisionZip cannot run on this model: it needs"),
        ({"method": "prunesid", "budget": 730}, "prunesid.budget 730 exceeds the 729 tokens a view of this model has (729 patches)"),
        ({"method": "prunesid", "budget": 64, "dynamic": True}, "enable_mm_embeds=True"),
        ({"method": "nope", "budget": 64}, "prunesid.method must be one of"),
        (None, "sets no prunesid settings"),
    ],
)
def test_bad_settings_stop_the_engine_at_start_named(onevision_checkpoint, settings, message):
    from prunesid.families.llava_onevision.vllm_model import engine_press

    with pytest.raises(ValueError, match=re.escape(message)):
        engine_press(_config(onevision_checkpoint, settings))


def test_the_largest_budget_is_a_whole_view(onevision_checkpoint):
    from prunesid.families.llava_onevision.vllm_model import engine_press

    engine = engine_press(_config(onevision_checkpoint, {"method": "random", "budget": 729}))
    assert engine.fed_tokens((384, 384)) == 729 + 729 + 27  # base view, one whole tile, 27 newlines
