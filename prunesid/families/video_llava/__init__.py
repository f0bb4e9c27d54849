"""Video-LLaVA (``video_llava``): 8-frame clips and images, one press per frame."""

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

FAMILY = FamilyDeclaration(
    package=__name__,
    label="Video-LLaVA",
    order=40,
    builtins=("tiny-random-video-llava",),
    lmms_eval=(LmmsEvalModel("prunesid_video_llava", simple_class="VideoLlava"),),
)
