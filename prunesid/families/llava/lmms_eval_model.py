"""lmms-eval's llava_hf (LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision checkpoints) with a press."""

from __future__ import annotations

from lmms_eval.models.chat.llava_hf import LlavaHf as _ChatLlavaHf
from lmms_eval.models.simple.llava_hf import LlavaHf as _SimpleLlavaHf
from prunesid.eval.models import PressedModel, single_process


class _LlavaArgs:
    def adjust_kwargs(self, kwargs: dict) -> None:
        # lmms-eval's llava_hf passes device_map="" to from_pretrained on one process, which
        # transformers 5 refuses: load onto the requested device instead.
        if not kwargs.get("device_map") and single_process():
            kwargs["device_map"] = str(kwargs.get("device", "cuda"))


class LlavaHf(_LlavaArgs, PressedModel, _ChatLlavaHf):
    """``prunesid_llava_hf`` (chat): lmms-eval's llava_hf (LLaVA-1.5, LLaVA-NeXT) with a press."""

    model_id = "prunesid_llava_hf"
    processor_attr = "_image_processor"
    is_simple = False


class LlavaHfSimple(_LlavaArgs, PressedModel, _SimpleLlavaHf):
    """``prunesid_llava_hf`` with ``--force_simple``: lmms-eval's simple llava_hf with a press."""

    model_id = "prunesid_llava_hf"
    processor_attr = "_image_processor"
    is_simple = True
