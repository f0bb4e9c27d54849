"""LLaVA-OneVision (``llava_onevision``): SigLIP, anyres_max_9 tiles, pooled video frames."""

from prunesid.family_kit.declaration import FamilyDeclaration

FAMILY = FamilyDeclaration(
    package=__name__,
    label="LLaVA-OneVision",
    options=("newlines",),
    order=60,
    builtins=("tiny-random-llava-onevision",),
    vllm={"llava_onevision": "vllm_model:PruneSIDLlavaOnevisionForConditionalGeneration"},
)
