"""Qwen2-VL in vLLM with a press: vLLM's ``Qwen2VLForConditionalGeneration`` with the plug-in's
sizing, press and positions (:mod:`prunesid.families.qwen_vl.vllm_models.base`). vLLM's Qwen2-VL class does not
take part in multimodal pruning itself; this subclass declares it, with its own
``recompute_mrope_positions``. A clip's groups are one time step apart, as transformers'
``get_rope_index`` places them."""

from __future__ import annotations

from vllm.model_executor.models.qwen2_vl import (
    Qwen2VLDummyInputsBuilder,
    Qwen2VLForConditionalGeneration,
    Qwen2VLMultiModalProcessor,
    Qwen2VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.families.qwen_vl.vllm_models.base import LibraryProcessorInfo, PressedQwen, PressedQwenProcessor


class PressedQwen2VLProcessor(PressedQwenProcessor, Qwen2VLMultiModalProcessor):
    pass


class PressedQwen2VLInfo(LibraryProcessorInfo, Qwen2VLProcessingInfo):
    pass


@MULTIMODAL_REGISTRY.register_processor(PressedQwen2VLProcessor, info=PressedQwen2VLInfo, dummy_inputs=Qwen2VLDummyInputsBuilder)
class PruneSIDQwen2VLForConditionalGeneration(PressedQwen, Qwen2VLForConditionalGeneration):
    # What vLLM inspects and caches by this file's hash (prunesid.families.qwen_vl.vllm_models.base.PressedQwen):
    supports_multimodal_pruning = True
    supported_video_pruning_methods = ("evs",)  # the switch's method; the press replaces it
    supports_mm_device_do_normalize = False  # the processor normalises pixels, as in the library
