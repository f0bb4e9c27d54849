"""lmms-eval's video_llava with a press per frame."""

from __future__ import annotations

from lmms_eval.models.simple.video_llava import VideoLLaVA as _SimpleVideoLLaVA
from prunesid.eval.models import PressedModel


class VideoLlava(PressedModel, _SimpleVideoLLaVA):
    """``prunesid_video_llava``: lmms-eval's video_llava (Video-LLaVA, 8 frames) with a press;
    the budget is per frame (the paper's 17 per frame: 136 video tokens)."""

    model_id = "prunesid_video_llava"
    processor_attr = "_processor"
    is_simple = True
