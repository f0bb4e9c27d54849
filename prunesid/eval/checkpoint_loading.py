"""Building an lmms-eval model class from a checkpoint in this project's environment.

lmms-eval's model classes build a checkpoint's processor themselves (``AutoProcessor``,
``VideoLlavaProcessor``), and without torchvision that fails for Qwen-VL and Video-LLaVA:
their video processors need it. :func:`checkpoint_loading` lets one such class's
``__init__`` build it the way ``prunesid.load_vlm`` does (``prunesid.family_kit.processors``): for
the duration of the call, the names the class's modules load processors by resolve to that
loader; they are restored afterwards, exceptions included. With torchvision installed it
changes nothing.

It also fails first, naming the fix, where the class would fail at its first sample: lmms-eval's
Qwen2.5-VL classes prepare every sample with ``qwen_vl_utils`` (an optional import there).

And it tells lmms-eval's Qwen3-VL / Qwen3.5 classes whether a checkpoint is a mixture of
experts from its config: they guess it from an ``A<n>B`` in the checkpoint's name
(``Qwen3-VL-30B-A3B-Instruct``), so a MoE checkpoint in a directory named otherwise would be
built with the dense class.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

from prunesid.family_kit.processors import load_processor, torchvision_available

PROCESSOR_NAMES = ("AutoProcessor", "VideoLlavaProcessor")
MODEL_CLASS_RESOLVER = "_resolve_model_class"  # lmms-eval's qwen3_vl: (pretrained, is_moe) -> class


class CheckpointProcessor:
    """Stands in for ``AutoProcessor`` / ``VideoLlavaProcessor`` inside an lmms-eval module."""

    @staticmethod
    def from_pretrained(pretrained, **kwargs):
        image_options = {key: kwargs.pop(key) for key in ("min_pixels", "max_pixels") if key in kwargs}
        return load_processor(str(pretrained), _model_type(str(pretrained)), **image_options)


@contextmanager
def checkpoint_loading(lmms_eval_class):
    # The class and the lmms-eval classes it inherits its __init__ from (chat classes extend the simple ones).
    modules = {sys.modules[klass.__module__] for klass in lmms_eval_class.__mro__ if klass.__module__.startswith("lmms_eval.")}
    if any(getattr(module, "_has_qwen_vl", True) is False for module in modules):
        raise ValueError(
            f"lmms-eval's {lmms_eval_class.__name__} prepares every sample with qwen_vl_utils.process_vision_info, "
            "which is not installed: `pip install qwen-vl-utils` (it needs torchvision as well)"
        )
    replaced = [(module, MODEL_CLASS_RESOLVER, _moe_from_config(getattr(module, MODEL_CLASS_RESOLVER)))
                for module in modules if hasattr(module, MODEL_CLASS_RESOLVER)]
    if not torchvision_available():
        replaced += [(module, name, CheckpointProcessor) for module in modules for name in PROCESSOR_NAMES if hasattr(module, name)]
    originals = [(module, name, getattr(module, name)) for module, name, _ in replaced]
    for module, name, replacement in replaced:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def _moe_from_config(resolve):
    """lmms-eval's class resolver, told by the checkpoint's config whether it is a MoE."""

    def resolve_by_config(pretrained, is_moe):
        return resolve(pretrained, _model_type(str(pretrained)).endswith("_moe"))

    return resolve_by_config


def _model_type(pretrained: str) -> str:
    if Path(pretrained).is_dir():
        return json.loads((Path(pretrained) / "config.json").read_text())["model_type"]
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(pretrained).model_type
