"""The placement of a Qwen-VL prompt's kept tokens (prunesid.families.qwen_vl.vllm_models.positions), without an
engine: the positions come out as the library's (``get_rope_index`` on the unpruned ids,
sliced at the tokens fed) however vLLM's runner cuts the prefill into chunks, and the
channels that carry them survive bfloat16."""

from __future__ import annotations

import pytest
import torch

from conftest import pattern
from prunesid.methods.registry import build_press
from prunesid.families.qwen_vl.vllm_models.positions import (
    kept_channels,
    place,
    position_channels,
    provisional_positions,
    runs_of,
    split_channels,
)

IMAGES = [pattern((640, 480), 1), pattern((300, 500), 2)]


@pytest.fixture(scope="module")
def library():
    """The library's two-image prompt under PruneSID N = 16 on the tiny Qwen2.5-VL."""
    from prunesid import load_vlm

    vlm = load_vlm("tiny-random-qwen2.5-vl", dtype="float32")
    prepared = vlm.prepare(IMAGES, "What differs?", build_press("prunesid", {"budget": 16}))
    encoded = [vlm.encode(image) for image in IMAGES]
    channels = []
    for run, item in zip(prepared.runs, encoded):
        groups, height, width = (int(v) for v in item.pixel_inputs["image_grid_thw"][0])
        channels.append(kept_channels(run.origin, (groups, height // 2, width // 2), 1.0, torch.float32))
    ids = prepared.input_ids[0]
    media = (vlm.model.config.image_token_id, vlm.model.config.video_token_id)
    return ids, channels, prepared.model_inputs["position_ids"][1:, 0], media


def run_in_chunks(ids, channels, media, chunk: int):
    """What vLLM's runner does: per prefill chunk, the slice of each input's embeddings that
    falls in it, then ``recompute_mrope_positions`` with the positions kept between chunks."""
    positions, _ = provisional_positions(ids.tolist(), media)
    is_media = torch.isin(ids, torch.tensor(media))
    starts = [i for i in range(len(ids)) if is_media[i] and (i == 0 or not is_media[i - 1])]
    delta = None
    for begin in range(0, len(ids), chunk):
        end = min(begin + chunk, len(ids))
        pieces = []
        for start, item in zip(starts, channels):
            first, last = max(begin - start, 0), min(end - start, item.shape[0])
            if first < last:
                pieces.append(split_channels(torch.cat([torch.zeros(last - first, 4), item[first:last]], dim=1))[1:])
        positions, delta = place(ids.tolist(), runs_of(pieces), positions, begin, media)
    return positions, delta


@pytest.mark.parametrize("chunk", [10_000, 64, 37, 5, 1])
def test_positions_are_the_library_s_however_the_prefill_is_chunked(library, chunk):
    """Catches a continued run placed from its own start (chunks cut inside an image) and the
    text after an image not continuing from the unpruned extent."""
    ids, channels, wanted, media = library
    positions, delta = run_in_chunks(ids, channels, media, chunk)
    assert torch.equal(positions, wanted)
    assert delta == int(wanted.max()) + 1 - len(ids)


def test_the_positions_of_the_pruned_sequence_are_not_the_library_s(library):
    """The breakage these tests exist for: kept tokens at the positions a grid of the fed
    count would have (row-major over the pruned run) differ from the library's."""
    ids, channels, wanted, media = library
    pruned = []
    for item in channels:
        count = item.shape[0]
        relative = torch.stack([torch.zeros(count, dtype=torch.long), torch.arange(count) // 8, torch.arange(count) % 8], dim=1)
        pruned.append(position_channels(relative, 8, torch.float32))
    positions, _ = run_in_chunks(ids, pruned, media, 10_000)
    assert not torch.equal(positions, wanted)


def test_the_channels_are_exact_in_bfloat16():
    relative = torch.tensor([[0, 0, 0], [255, 256, 257], [65535, 1000, 4097]])
    embeds, back, extent, index = split_channels(
        torch.cat([torch.ones(3, 2, dtype=torch.bfloat16), position_channels(relative, 70, torch.bfloat16)], dim=1)
    )
    assert torch.equal(back, relative) and extent == 70 and index.tolist() == [0, 1, 2] and embeds.shape == (3, 2)
    with pytest.raises(ValueError, match="M-RoPE positions must lie in"):
        position_channels(torch.tensor([[65536, 0, 0]]), 1, torch.float32)
