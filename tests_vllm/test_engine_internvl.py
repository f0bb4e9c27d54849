"""InternVL3 in the engine: (tiles + thumbnail) x N image tokens per image and frames x N per
clip, per view the tokens the library keeps through transformers on the same checkpoint, and
the same prompt and next-token distribution as the library's compressed model."""

from __future__ import annotations

import gc
import json
import os
from types import SimpleNamespace

import pytest
import torch

from conftest import ENGINE_ARGS, pattern
from prunesid.methods.registry import build_press
from prunesid.vllm import engine_overrides
from prunesid.families.llava.vllm_model import RECORD_ENV

BUDGET = 16
TOKENS_PER_VIEW = (448 // 14 // 2) ** 2  # 32 x 32 patches of a 448 px tile, 2 x 2 pixel shuffle
IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]
QUESTION = "Compare them."
# What InternVL's chat template writes for two images and the question (vLLM widens each
# <IMG_CONTEXT> to <img> + its run + </img>, as the library does).
PROMPT = f"<|im_start|>user\n<IMG_CONTEXT>\n<IMG_CONTEXT>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
INTERNVL_ARGS = dict(ENGINE_ARGS, limit_mm_per_prompt={"image": 2, "video": 1}, max_model_len=4096)
TOP = 5


def tile_grid(size: tuple[int, int], most: int = 12) -> tuple[int, int]:
    """(cols, rows) of InternVL's tiling, written out here: of the grids of 1 to ``most``
    tiles, the one whose aspect ratio is closest to the image's (no ties for these sizes)."""
    width, height = size
    grids = [(cols, rows) for cols in range(1, most + 1) for rows in range(1, most + 1) if cols * rows <= most]
    return min(grids, key=lambda grid: abs(grid[0] / grid[1] - width / height))


def views_of(size: tuple[int, int]) -> int:
    cols, rows = tile_grid(size)
    return cols * rows + (cols * rows > 1)  # the thumbnail follows more than one tile


CLIP = [pattern((320, 240), 10 + frame) for frame in range(8)]  # the library samples 8 frames: all of these
CLIP_PROMPT = "<|im_start|>user\n<video>\nDescribe it.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def internvl_checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random-internvl"))


@pytest.fixture(scope="module")
def library(internvl_checkpoint):
    from prunesid import load_vlm

    vlm = load_vlm(internvl_checkpoint, dtype="float32")
    return vlm, [vlm.encode(image) for image in IMAGES]


@pytest.fixture(scope="module", params=["prunesid", "visionzip"])
def served(request, internvl_checkpoint, library, tmp_path_factory):
    """One engine per method: the two images in one request, the clip, then the library's
    embeddings of the two images under the same press (the embeddings route); each request's
    prompt, first-token logprobs and the tokens the engine kept (RECORD_ENV)."""
    import numpy as np
    from vllm import LLM, SamplingParams

    from prunesid.vllm.client import compressed_embeddings

    method = request.param
    folder = tmp_path_factory.mktemp(method)
    sent = compressed_embeddings(library[0], IMAGES, build_press(method, {"budget": BUDGET}))
    llm = LLM(
        model=internvl_checkpoint, hf_overrides=engine_overrides("internvl", method, BUDGET), enable_mm_embeds=True, **INTERNVL_ARGS,
    )
    outputs = {}
    try:
        for name, prompt, data in [
            ("images", PROMPT, {"image": IMAGES}),
            ("clip", CLIP_PROMPT, {"video": np.stack([np.asarray(frame) for frame in CLIP])}),
            ("sent", PROMPT, {"image": sent}),
        ]:
            os.environ[RECORD_ENV] = str(folder / f"{name}.jsonl")
            [output] = llm.generate({"prompt": prompt, "multi_modal_data": data}, SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP))
            record = folder / f"{name}.jsonl"
            kept = [json.loads(line)["indices"] for line in record.read_text().splitlines()] if record.exists() else []
            outputs[name] = SimpleNamespace(ids=list(output.prompt_token_ids), logprobs=output.outputs[0].logprobs[0], kept=kept)
        tokenizer = llm.get_tokenizer()
    finally:
        os.environ.pop(RECORD_ENV, None)
        del llm
        gc.collect()
    return SimpleNamespace(method=method, press=build_press(method, {"budget": BUDGET}), tokenizer=tokenizer, **outputs)


def test_internvl_feeds_views_times_n_and_matches_the_library(served, library):
    vlm, encoded = library
    press, tokenizer, ran = served.press, served.tokenizer, served.images
    views = [views_of(image.size) for image in IMAGES]
    assert [tile_grid(image.size) for image in IMAGES] == [(4, 3), (2, 3)]
    assert views == [item.num_views for item in encoded] == [13, 7]
    context = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert sum(token == context for token in ran.ids) == sum(views) * BUDGET
    # Text, minus each image's <IMG_CONTEXT>, plus its <img> ... </img> around its N per view.
    assert len(ran.ids) == len(tokenizer.encode(PROMPT)) + sum(views) * BUDGET + len(IMAGES)
    assert sum(vlm.fed_tokens(image.size, press) for image in IMAGES) == sum(views) * BUDGET
    expected = [[index.tolist() for index in result.indices] for result in (vlm.compress([item], press)[0] for item in encoded)]
    assert sorted(ran.kept) == sorted(expected)
    # The whole compressed prompt as the library lays it out, and the same next-token
    # distribution: the engine's embeddings (VisionZip's merged tokens too) are the library's.
    prepared = vlm.prepare(IMAGES, QUESTION, press)
    assert prepared.input_ids[0].tolist() == ran.ids
    assert_same_next_token(vlm, prepared, ran.logprobs)


def test_a_clip_feeds_frames_times_n_and_matches_the_library(served, library):
    from prunesid.video import Video

    vlm, _ = library
    press, tokenizer, ran = served.press, served.tokenizer, served.clip
    video, context = tokenizer.convert_tokens_to_ids("<video>"), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert sum(token == video for token in ran.ids) == len(CLIP) * BUDGET
    clip = Video.from_frames(CLIP)
    encoded = vlm.encode(clip)
    assert encoded.num_views == len(CLIP)
    assert ran.kept == [[index.tolist() for index in vlm.compress([encoded], press)[0].indices]]
    # vLLM keeps <video> as the frames' placeholder where transformers' model reads <IMG_CONTEXT>.
    prepared = vlm.prepare([clip], "Describe it.", press)
    assert prepared.input_ids[0].tolist() == [context if token == video else token for token in ran.ids]
    assert_same_next_token(vlm, prepared, ran.logprobs)


def test_sent_embeddings_pass_through_untouched(served):
    """The library's embeddings of the two images (different lengths) give exactly the prompt
    and next-token distribution of the engine pressing the images itself."""
    assert served.sent.kept == []  # nothing pressed in the engine
    assert served.sent.ids == served.images.ids
    engine = lambda ran: {token: entry.logprob for token, entry in ran.logprobs.items()}  # noqa: E731
    assert engine(served.sent).keys() == engine(served.images).keys()
    for token, logprob in engine(served.images).items():
        assert abs(engine(served.sent)[token] - logprob) < 1e-5  # measured: at most 5e-7


def assert_same_next_token(vlm, prepared, logprobs) -> None:
    with torch.no_grad():
        logits = vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits[0, -1]
    expected = torch.log_softmax(logits.float(), dim=-1).topk(TOP)
    engine = sorted(logprobs.items(), key=lambda item: -item[1].logprob)[:TOP]
    assert [token for token, _ in engine] == expected.indices.tolist()
    torch.testing.assert_close(torch.tensor([entry.logprob for _, entry in engine]), expected.values, rtol=0, atol=1e-4)


def _config(internvl_checkpoint, settings, **changes):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(internvl_checkpoint)
    config.prunesid = settings
    for name, value in changes.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(
    ("settings", "changes", "message"),
    [
        ({"method": "nope", "budget": 16}, {}, "prunesid.method must be one of"),
        ({"method": "prunesid", "budget": 16, "dynamic": True}, {}, "enable_mm_embeds=True"),
        ({"method": "prunesid", "budget": 16, "colour": 1}, {}, "prunesid.colour is not an option of method 'prunesid'"),
        (None, {}, "sets no prunesid settings"),
        ({"method": "prunesid", "budget": 16}, {"vision_feature_select_strategy": "full"}, "strategy 'default' only"),
        ({"method": "prunesid", "budget": 16}, {"vision_feature_layer": [-1, -2]}, "one vision feature layer"),
        ({"method": "prunesid", "budget": 16}, {"downsample_ratio": 0.3}, "downsample_ratio 0.3 does not pixel-shuffle"),
    ],
)
def test_bad_settings_stop_the_start_named(internvl_checkpoint, settings, changes, message):
    from prunesid.families.internvl.vllm_model import engine_press

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        engine_press(_config(internvl_checkpoint, settings, **changes))


def test_the_front_end_reads_the_tiling_the_processor_cuts_with(internvl_checkpoint, library):
    from prunesid.families.internvl.vllm_model import engine_press, processor_tiling

    vlm, _ = library
    tiling = processor_tiling(vlm.processor, {})
    assert tiling == (1, 12)  # crop_to_patches is off in the image processor, on in the processor
    assert processor_tiling(vlm.processor, {"max_patches": 4}) == (1, 4)
    pressed = engine_press(_config(internvl_checkpoint, {"method": "divprune", "budget": BUDGET}), tiling)
    for image in IMAGES:
        assert pressed.fed_tokens(image.size) == views_of(image.size) * BUDGET
    # Unmodified, the same layout feeds the processor's 256 tokens per view.
    assert [pressed.layout.fed_tokens(image.size) for image in IMAGES] == [v * TOKENS_PER_VIEW for v in (13, 7)]
    assert SimpleNamespace(**vlm.family.layout.__dict__) == SimpleNamespace(**pressed.layout.__dict__)
