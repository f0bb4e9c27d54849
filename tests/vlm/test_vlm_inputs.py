"""Bad input to the model layer fails early with a message that names the problem."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from prunesid import PruneSID, load_image, load_vlm
from tests.conftest import scene


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header alone claims ``width`` x ``height`` (refused before decoding)."""
    import tempfile
    from pathlib import Path

    from tests.media.test_images_large import write_png_header_only

    return write_png_header_only(Path(tempfile.mkdtemp()) / "claims.png", width, height).read_bytes()


@pytest.mark.parametrize(
    "image, message",
    [
        (Image.new("RGB", (1, 1)), "1 x 1 pixels; each side must be at least 16"),
        (_png_header_claiming(20000, 10000), "is 200.0 MP; the largest accepted is 179.0 MP"),
        (Image.new("RGB", (2000, 40)), "aspect ratios beyond 20:1"),
        (b"this is not an image", "is not an image PIL can read"),
        (b"", "is empty"),
        ("/no/such/picture.png", "does not exist"),
        (np.zeros((32, 32, 2), np.uint8), "array must be H x W"),
        (np.zeros((32, 32, 3), np.float32), "array must be uint8"),
    ],
)
def test_unusable_images_are_refused_with_the_reason(image, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_image(image)


def test_non_image_types_are_refused():
    with pytest.raises(TypeError, match="image must be a PIL image, a file path, encoded bytes or a numpy array, got int"):
        load_image(42)


def test_a_truncated_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    scene(200, 150).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match="could not be decoded"):
        load_image(path)


def test_a_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ValueError, match="is not an image PIL can read"):
        load_image(str(path))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_common_mode_becomes_rgb_and_runs(tiny_vlm, mode):
    source = scene(120, 90)
    if mode == "I;16":
        image = Image.fromarray((np.asarray(source.convert("L"), dtype=np.uint16) * 257))
        assert image.mode == "I;16"
    else:
        image = source.convert(mode)
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (120, 90)
    if mode in ("L", "I;16"):
        # 16-bit data keeps its brightness: 257 * v maps back to v.
        np.testing.assert_array_equal(np.asarray(rgb)[:, :, 0], np.asarray(source.convert("L")))
    reply = tiny_vlm.chat(image, "What is this?", press=PruneSID(budget=16), max_new_tokens=1)
    assert reply.visual_tokens == [16]


def test_transparent_pixels_are_composited_on_white():
    image = Image.new("RGBA", (32, 32), (10, 20, 30, 0))
    assert load_image(image).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_an_empty_prompt_is_refused(tiny_vlm, prompt):
    with pytest.raises(ValueError, match="prompt is empty"):
        tiny_vlm.chat(scene(), prompt)


def test_a_prompt_longer_than_the_context_is_refused(tiny_vlm):
    with pytest.raises(ValueError, match=r"the prompt is \d+ tokens \(64 of them visual\) but tiny-random has a context of 4096"):
        tiny_vlm.chat(scene(), "why? " * 1000, press=PruneSID(budget=64))


def test_messages_must_end_with_a_user_question(tiny_vlm):
    with pytest.raises(ValueError, match="last message must be a user message"):
        tiny_vlm.chat(scene(), [{"role": "assistant", "content": "hi"}])
    with pytest.raises(ValueError, match="holds 0 image placeholders but 1 images"):
        tiny_vlm.chat(scene(), [{"role": "user", "content": "no image part here"}])


def test_a_press_must_be_a_press(tiny_vlm):
    with pytest.raises(TypeError, match=r"press must be a prunesid press \(e.g. prunesid.PruneSID\) or None, got dict"):
        tiny_vlm.chat(scene(), "hi", press={"budget": 64})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"budget": 0}, "budget must be a positive integer, got 0"),
        ({"budget": 64.5}, "budget must be a positive integer, got 64.5"),
        ({"grouping": "spectral"}, "grouping must be one of"),
        ({"centering": "median"}, "centering must be one of"),
        ({"lam": 0.0}, "lam must be a positive finite number"),
        ({"groups": 0}, r"groups must be a positive integer \(K\) or None, got 0"),
            ({"preset": "qwen"}, "preset must be one of"),
        ({"order": "random"}, "order must be one of"),
        ({"keep_cls": "yes"}, "keep_cls must be True or False"),
        ({"budget": 1}, "budget must be at least 2 with keep_cls=True"),
        ({"phi_ref": -1.0}, "phi_ref must be a positive finite number"),
    ],
)
def test_press_settings_are_validated_at_construction(settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        PruneSID(**settings)


def test_unknown_models_list_the_builtins():
    import re

    from prunesid.vlm import BUILTIN_MODELS

    assert {"tiny-random", "tiny-random-next"} <= set(BUILTIN_MODELS)
    listed = re.escape(", ".join(BUILTIN_MODELS))
    with pytest.raises(ValueError, match=rf"unknown model 'llava-tiny': not a built-in \({listed}\)"):
        load_vlm("llava-tiny")


def test_unknown_devices_and_dtypes_are_refused():
    with pytest.raises(ValueError, match="device must be"):
        load_vlm("tiny-random", device="tpu")
    with pytest.raises(ValueError, match="dtype must be"):
        load_vlm("tiny-random", dtype="int8")
