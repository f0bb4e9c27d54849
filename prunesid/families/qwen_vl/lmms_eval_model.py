"""lmms-eval's qwen2_5_vl, qwen3_vl and qwen3_5 classes with a press."""

from __future__ import annotations

from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL as _ChatQwen2_5_VL
from lmms_eval.models.chat.qwen3_5 import Qwen3_5 as _ChatQwen3_5
from lmms_eval.models.chat.qwen3_vl import Qwen3_VL as _ChatQwen3_VL
from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as _SimpleQwen2_5_VL
from lmms_eval.models.simple.qwen3_5 import Qwen3_5 as _SimpleQwen3_5
from lmms_eval.models.simple.qwen3_vl import Qwen3_VL as _SimpleQwen3_VL
from prunesid.eval.models import PressedModel


class Qwen2_5_VL(PressedModel, _ChatQwen2_5_VL):
    """``prunesid_qwen2_5_vl`` (chat): lmms-eval's qwen2_5_vl with a press."""

    model_id = "prunesid_qwen2_5_vl"
    processor_attr = "processor"
    is_simple = False


class Qwen2_5_VLSimple(PressedModel, _SimpleQwen2_5_VL):
    """``prunesid_qwen2_5_vl`` with ``--force_simple``."""

    model_id = "prunesid_qwen2_5_vl"
    processor_attr = "processor"
    is_simple = True


class Qwen3_VL(PressedModel, _ChatQwen3_VL):
    """``prunesid_qwen3_vl`` (chat): lmms-eval's qwen3_vl (Qwen3-VL, Qwen3.5, and their MoE
    variants, told apart by the checkpoint's config, whatever its name) with a press."""

    model_id = "prunesid_qwen3_vl"
    processor_attr = "processor"
    is_simple = False


class Qwen3_VLSimple(PressedModel, _SimpleQwen3_VL):
    """``prunesid_qwen3_vl`` with ``--force_simple``."""

    model_id = "prunesid_qwen3_vl"
    processor_attr = "processor"
    is_simple = True


class Qwen3_5(PressedModel, _ChatQwen3_5):
    """``prunesid_qwen3_5`` (chat): lmms-eval's qwen3_5 (Qwen3.5 defaults: thinking on,
    sampling) with a press."""

    model_id = "prunesid_qwen3_5"
    processor_attr = "processor"
    is_simple = False


class Qwen3_5Simple(PressedModel, _SimpleQwen3_5):
    """``prunesid_qwen3_5`` with ``--force_simple``."""

    model_id = "prunesid_qwen3_5"
    processor_attr = "processor"
    is_simple = True
