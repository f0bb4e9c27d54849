"""The evaluation plug-in's per-request state, in process and without lmms-eval's models:
which processor call a ``generate`` presses, which clips an unpressed run lets through,
over which views phi_ref is calibrated, and where a checkpoint's MoE flag comes from.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from prunesid.eval.checkpoint_loading import _moe_from_config
from prunesid.eval.pressing import PressFailure, PressRun, ProcessorCall, ProcessorView, mean_phi

FRAME = Image.new("RGB", (32, 32), (200, 10, 10))


class Processor:
    def __call__(self, **kwargs):
        return {"input_ids": [1, 2, 3], "pixel_values_videos": "pixels"}


def test_an_unpressed_run_of_an_image_only_class_lets_clips_through():
    """Bug caught: the refusal of clips applied without a press (``method=none`` on an
    image-only class refusing a video task the unmodified model can run)."""
    calls = []
    view = ProcessorView(Processor(), calls, pressed=False, takes_video=False)
    assert view(text="x", videos=[[FRAME, FRAME]])["input_ids"] == [1, 2, 3]
    assert [call.media for call in calls] == [[("video", [FRAME, FRAME])]]
    pressed = ProcessorView(Processor(), [], pressed=True, takes_video=False)
    with pytest.raises(PressFailure, match="video inputs cannot be compressed by this evaluation model"):
        pressed(text="x", videos=[[FRAME, FRAME]])
    assert ProcessorView(Processor(), [], pressed=True, takes_video=True)(text="x", videos=[[FRAME, FRAME]])


def test_generate_presses_the_processor_call_that_made_its_inputs():
    """Bug caught: ``generate()`` taking the first recorded processor call (a class that runs
    its processor more than once per request, e.g. to count tokens, would press the wrong
    images); the last call made the inputs, and the list is emptied for the next request."""
    first = ProcessorCall(images=[Image.new("RGB", (8, 8))], keys=("pixel_values",))
    last = ProcessorCall(images=[FRAME], keys=("pixel_values",))
    pressed = []
    run = PressRun(vlm=None, press=object(), settings={}, records=None, model_id="m", calls=[first, last])
    run._pressed = lambda model, kwargs, call: pressed.append(call) or "output"
    assert run.generate(model=None, kwargs={}) == "output"
    assert pressed == [last] and run.calls == []


def test_phi_ref_is_calibrated_over_every_view_of_every_image():
    """Bug caught: phi_ref the mean of each image's first view only (LLaVA-NeXT's tiles,
    InternVL's tiles, a clip's frames left out of the reference they are pressed against)."""
    phis = {"a": [0.2, 0.4, 0.6, 0.8], "b": [0.9]}
    vlm = SimpleNamespace(encode=lambda image: SimpleNamespace(information=lambda: phis[image]))
    assert mean_phi(vlm, {"a": "a", "b": "b"}, device="cpu") == pytest.approx((0.2 + 0.4 + 0.6 + 0.8 + 0.9) / 5)


@pytest.mark.parametrize(("model_type", "guessed", "wanted"), [("qwen3_vl_moe", False, True), ("qwen3_vl", True, False)])
def test_the_checkpoints_config_says_whether_it_is_a_moe_not_its_name(tmp_path, model_type, guessed, wanted):
    """Bug caught: lmms-eval's name guess (``A<n>B`` in the name) passed on instead of the
    config's ``model_type`` (a MoE in a directory named otherwise built with the dense class,
    a dense one named ``...-A3B`` with the MoE class)."""
    checkpoint = tmp_path / ("Qwen3-VL-30B-A3B" if guessed else "my-checkpoint")
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": model_type}))
    seen = []
    resolve = _moe_from_config(lambda pretrained, is_moe: seen.append((pretrained, is_moe)) or "class")
    assert resolve(str(checkpoint), guessed) == "class"
    assert seen == [(str(checkpoint), wanted)]
