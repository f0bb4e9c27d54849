"""LLaVA-1.5 and SigLIP LLaVA (``llava``): one view per image."""

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

FAMILY = FamilyDeclaration(
    package=__name__,
    label="LLaVA-1.5",
    order=10,
    builtins=("tiny-random",),
    vllm={"llava": "vllm_model:PruneSIDLlavaForConditionalGeneration"},
    # lmms-eval's llava_hf also runs LLaVA-NeXT and LLaVA-OneVision checkpoints
    lmms_eval=(LmmsEvalModel("prunesid_llava_hf", chat_class="LlavaHf", simple_class="LlavaHfSimple"),),
)
