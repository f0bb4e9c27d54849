"""The press path on several inputs at once: each input gets back its own views and tokens.

Written from the survivors of a mutation run over prunesid/pipeline.py: every other test
compresses one input, or inputs of one size, so the batch's bookkeeping went unchecked."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from prunesid import PruneSID, load_vlm
from prunesid.pipeline import compress, cut_placeholder_runs

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
