"""The model ids lmms-eval finds through the ``lmms_eval.models`` entry-point group.

pyproject.toml points one entry point per model id here; lmms-eval (>= 0.6) loads them when
``lmms_eval.models`` is imported. Loading this module imports only lmms-eval's registry,
not the model classes: those are imported when a run asks for the model.
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

_MODELS = "prunesid.eval.models"

# LLaVA-1.5, LLaVA-NeXT and LLaVA-OneVision checkpoints (llava-hf/...): lmms-eval's llava_hf with a press.
llava_hf = ModelManifest(
    model_id="prunesid_llava_hf",
    chat_class_path=f"{_MODELS}.LlavaHf",
    simple_class_path=f"{_MODELS}.LlavaHfSimple",
)

# Qwen2.5-VL checkpoints (Qwen/Qwen2.5-VL-...): lmms-eval's qwen2_5_vl with a press.
qwen2_5_vl = ModelManifest(
    model_id="prunesid_qwen2_5_vl",
    chat_class_path=f"{_MODELS}.Qwen2_5_VL",
    simple_class_path=f"{_MODELS}.Qwen2_5_VLSimple",
)

# Video-LLaVA (LanguageBind/Video-LLaVA-7B-hf): lmms-eval's video_llava with a press per frame.
video_llava = ModelManifest(
    model_id="prunesid_video_llava",
    simple_class_path=f"{_MODELS}.VideoLlava",
)

# Qwen3-VL, Qwen3.5 and their MoE variants: lmms-eval's qwen3_vl / qwen3_5 with a press.
qwen3_vl = ModelManifest(
    model_id="prunesid_qwen3_vl",
    chat_class_path=f"{_MODELS}.Qwen3_VL",
    simple_class_path=f"{_MODELS}.Qwen3_VLSimple",
)
qwen3_5 = ModelManifest(
    model_id="prunesid_qwen3_5",
    chat_class_path=f"{_MODELS}.Qwen3_5",
    simple_class_path=f"{_MODELS}.Qwen3_5Simple",
)

# InternVL3 / 3.5 -hf checkpoints: lmms-eval's internvl_hf with a press (budget per tile).
internvl_hf = ModelManifest(
    model_id="prunesid_internvl_hf",
    chat_class_path=f"{_MODELS}.InternVLHf",
)

# Mini-Gemini (YanweiLi/MGM-7B, MGM-7B-HD, ...): lmms-eval has no class; ours runs the
# library's own MGM model code (prunesid.eval.library_models).
mini_gemini = ModelManifest(
    model_id="prunesid_mini_gemini",
    simple_class_path="prunesid.eval.library_models.MiniGemini",
)
