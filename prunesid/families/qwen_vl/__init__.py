"""The Qwen-VL families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL (+ MoE), Qwen3.5 (+ MoE): dynamic
resolution, merged tokens, M-RoPE positions; one adapter, one vLLM module per model type."""

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
_ARCHITECTURES = (
    "Qwen2VL", "Qwen2_5_VL", "Qwen3VL", "Qwen3VLMoe", "Qwen3_5", "Qwen3_5Moe",
)

FAMILY = FamilyDeclaration(
    package=__name__,
    label="Qwen-VL",
    options=("min_pixels", "max_pixels", "fps"),
    order=30,
    builtins=(
        "tiny-random-qwen2-vl", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl",
        "tiny-random-qwen3-vl-moe", "tiny-random-qwen3.5", "tiny-random-qwen3.5-moe",
    ),
    vllm={
        model_type: f"vllm_models.{model_type}:PruneSID{stem}ForConditionalGeneration"
        for model_type, stem in zip(_TYPES, _ARCHITECTURES)
    },
    # vLLM's multimodal-pruning switch (its value is not used) and no prefix cache: docs/vllm.md
    vllm_engine_arguments={"video_pruning_rate": 0.5, "enable_prefix_caching": False},
    lmms_eval=(
        LmmsEvalModel("prunesid_qwen2_5_vl", chat_class="Qwen2_5_VL", simple_class="Qwen2_5_VLSimple"),
        LmmsEvalModel("prunesid_qwen3_vl", chat_class="Qwen3_VL", simple_class="Qwen3_VLSimple"),
        LmmsEvalModel("prunesid_qwen3_5", chat_class="Qwen3_5", simple_class="Qwen3_5Simple"),
    ),
)
