"""Mini-Gemini (MGM, MGM-HD): its own model code and checkpoint reader (transformers has none),
a low-resolution CLIP tower mined against a high-resolution ConvNeXt."""

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

FAMILY = FamilyDeclaration(
    package=__name__,
    label="Mini-Gemini",
    order=50,
    builtins=("tiny-random-mgm", "tiny-random-mgm-hd"),
    # lmms-eval has no class: this one runs the library's own model code
    lmms_eval=(LmmsEvalModel("prunesid_mini_gemini", simple_class="MiniGemini"),),
)
