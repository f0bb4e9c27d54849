"""LLaVA-NeXT (``llava_next``): a base view and anyres tiles (LLaVA-1.5's recipe for its built-in)."""

from prunesid.family_kit.declaration import FamilyDeclaration

FAMILY = FamilyDeclaration(
    package=__name__,
    label="LLaVA-NeXT",
    options=("newlines",),
    order=20,
    builtins=("tiny-random-next",),
    vllm={"llava_next": "vllm_model:PruneSIDLlavaNextForConditionalGeneration"},
)
