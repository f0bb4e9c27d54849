"""lmms-eval's Qwen3-VL module is changed only while a checkpoint loads through it: inside,
its class resolver reads MoE from the checkpoint's config; after, lmms-eval's own resolver
(and processor class) are back, for whatever else runs in the same process."""

from __future__ import annotations

import pytest

pytest.importorskip("lmms_eval")

from tests.eval import qwen_vl_utils_standin  # noqa: E402  (in place of qwen_vl_utils, which needs torchvision)

pytestmark = pytest.mark.eval
NAMES = ("_resolve_model_class", "AutoProcessor")


def test_the_module_is_changed_only_inside_and_restored_after(monkeypatch):
    from lmms_eval.models.simple import qwen3_vl

    monkeypatch.setattr(qwen3_vl, "process_vision_info", qwen_vl_utils_standin.process_vision_info)
    monkeypatch.setattr(qwen3_vl, "_has_qwen_vl", True)
    from prunesid.eval.checkpoint_loading import checkpoint_loading
    from prunesid.family_kit import builtin_directory

    moe = str(builtin_directory("tiny-random-qwen3-vl-moe"))  # a directory without lmms-eval's "A<n>B" mark
    before = {name: getattr(qwen3_vl, name) for name in NAMES}
    with checkpoint_loading(qwen3_vl.Qwen3_VL):
        assert qwen3_vl._resolve_model_class(moe, False)[0].__name__ == "Qwen3VLMoeForConditionalGeneration"
    assert {name: getattr(qwen3_vl, name) for name in NAMES} == before
    assert qwen3_vl._resolve_model_class(moe, False)[0].__name__ == "Qwen3VLForConditionalGeneration"  # lmms-eval's own guess again
