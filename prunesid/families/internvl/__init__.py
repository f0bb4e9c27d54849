"""InternVL3 / 3.5 ``-hf`` checkpoints (``internvl``): dynamic 448 px tiles, pixel shuffle."""

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

FAMILY = FamilyDeclaration(
    package=__name__,
    label="InternVL",
    order=70,
    builtins=("tiny-random-internvl",),
    vllm={"internvl": "vllm_model:PruneSIDInternVLForConditionalGeneration"},
    lmms_eval=(LmmsEvalModel("prunesid_internvl_hf", chat_class="InternVLHf"),),
)
