"""The embeddings route's client (prunesid.vllm.client), without an engine: what it sends
must be what the library feeds, written the way vLLM reads it."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from conftest import pattern
from PIL import Image

from prunesid import PruneSID, load_vlm
from prunesid.vllm.client import chat_message, compressed_embeddings, embeds_base64

# A flat image and a busy one: PruneSID-Dyn gives them different budgets.
IMAGES = [Image.new("RGB", (336, 336), "teal"), pattern((336, 336), 5)]
SHAPE_ERROR = "embeds must be a [n, H] tensor with n >= 1, got {}"


@pytest.fixture(scope="module")
def vlm():
    """bfloat16, so that the float32 the client promises is a conversion it must make."""
    return load_vlm("tiny-random", dtype=torch.bfloat16)


def library_features(vlm, press) -> list[torch.Tensor]:
    encoded = [vlm.encode(image) for image in IMAGES]
    return [vlm.visual_features(item, c).float() for item, c in zip(encoded, vlm.compress(encoded, press))]


def test_fixed_press_sends_what_the_library_feeds_in_float32(vlm):
    """Catches features of another image or press (a swapped zip, the images reversed) and a
    missing .float() (bfloat16 sent). (.cpu() cannot be told apart on a CPU-only machine.)"""
    press = PruneSID(budget=8)
    sent = compressed_embeddings(vlm, IMAGES, press)
    expected = library_features(vlm, press)
    assert not torch.equal(expected[0], expected[1])  # the order is visible
    assert len(sent) == 2
    for item, reference in zip(sent, expected):
        assert item.dtype == torch.float32 and item.device.type == "cpu"
        assert torch.equal(item, reference)


def test_images_are_compressed_in_one_batch(vlm, monkeypatch):
    """Catches a press run per image (a dynamic press then cannot share its budget)."""
    batches = []
    compress = vlm.compress

    def spy(encoded, press):
        batches.append([item.key for item in encoded])
        return compress(encoded, press)

    monkeypatch.setattr(vlm, "compress", spy)
    compressed_embeddings(vlm, IMAGES, PruneSID(budget=8))
    assert batches == [[vlm.encode(image).key for image in IMAGES]]


def test_dynamic_press_is_calibrated_on_the_images_first(vlm, monkeypatch):
    """Catches a skipped or discarded calibration (``press.calibrated(...)`` not kept: the
    batch mean reference gives the busy image 12 tokens, not 16), calibration on other
    images, and a generator of images consumed by the calibration (``list(images)`` dropped)."""
    reference = vlm.calibrate(IMAGES)
    calibrated_on = []
    calibrate = vlm.calibrate
    monkeypatch.setattr(vlm, "calibrate", lambda images: calibrated_on.append(images) or calibrate(images))
    sent = compressed_embeddings(vlm, iter(IMAGES), PruneSID(budget=8, dynamic=True))
    assert calibrated_on == [IMAGES]
    expected = library_features(vlm, PruneSID(budget=8, dynamic=True, phi_ref=reference))
    uncalibrated = library_features(vlm, PruneSID(budget=8, dynamic=True))
    assert [len(item) for item in expected] == [4, 16] != [len(item) for item in uncalibrated]
    assert all(torch.equal(item, wanted) for item, wanted in zip(sent, expected, strict=True))


def test_a_calibrated_press_is_not_calibrated_again(vlm, monkeypatch):
    """Catches a calibration run whatever ``needs_calibration`` says (the condition negated)."""
    monkeypatch.setattr(vlm, "calibrate", lambda images: pytest.fail("calibrated twice"))
    press = PruneSID(budget=8, dynamic=True, phi_ref=0.2)
    assert [len(item) for item in compressed_embeddings(vlm, IMAGES, press)] == [4, 16]


def test_no_images_and_a_non_press_are_refused(vlm):
    """Catches a missing check: an empty request, or a press name given for a press."""
    with pytest.raises(ValueError, match="^images must hold at least one image$"):
        compressed_embeddings(vlm, [], PruneSID(budget=8))
    with pytest.raises(TypeError, match=r"press must be a prunesid press \(e.g. prunesid.PruneSID\), got str"):
        compressed_embeddings(vlm, IMAGES, "prunesid")


def decode(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)


def test_embeds_round_trip_as_float32_npy():
    """Catches a dropped .detach() (numpy() refuses a tensor that requires grad), a dropped
    .float() (numpy has no bfloat16; float64 would stay float64), a transposed or reshaped
    array; the text is ASCII base64 of a .npy file that loads without pickle. (np.save's
    allow_pickle changes nothing for a numeric array: not observable.)"""
    embeds = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4).requires_grad_()
    text = embeds_base64(embeds)
    assert isinstance(text, str) and text.isascii()
    array = decode(text)
    assert array.dtype == np.float32 and array.shape == (3, 4)
    assert np.array_equal(array, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert decode(embeds_base64(torch.full((1, 2), 0.1, dtype=torch.float64))).dtype == np.float32


@pytest.mark.parametrize(
    ("embeds", "shown"),
    [
        (torch.zeros(4), "torch.Size([4])"),
        (torch.zeros(0, 8), "torch.Size([0, 8])"),
        (torch.zeros(1, 2, 3), "torch.Size([1, 2, 3])"),
        ([[1.0, 2.0]], "list"),
    ],
)
def test_embeds_that_are_not_n_by_h_are_refused_by_shape(embeds, shown):
    """Catches a missing or loosened check (``dim() != 2``, ``shape[0] == 0``, the type test)
    and a message that does not show what was given."""
    with pytest.raises(ValueError) as refused:
        embeds_base64(embeds)
    assert str(refused.value) == SHAPE_ERROR.format(shown)


def test_chat_message_is_the_images_in_order_then_the_text():
    """Catches the text put first, images reordered or dropped, a wrong role or part type."""
    first, second = torch.zeros(1, 2), torch.ones(2, 2)
    assert chat_message("What differs?", [first, second]) == {
        "role": "user",
        "content": [
            {"type": "image_embeds", "image_embeds": embeds_base64(first)},
            {"type": "image_embeds", "image_embeds": embeds_base64(second)},
            {"type": "text", "text": "What differs?"},
        ],
    }
    assert chat_message("Hi", []) == {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
