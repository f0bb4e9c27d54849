"""Qwen2.5-VL in vLLM with a press: vLLM's ``Qwen2_5_VLForConditionalGeneration`` with the
plug-in's sizing, press and positions (:mod:`prunesid.families.qwen_vl.vllm_models.base`). A clip's time axis is
spaced by ``tokens_per_second x second_per_grid_ts``, as transformers' ``get_rope_index``."""

from __future__ import annotations

from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.families.qwen_vl.vllm_models.base import LibraryProcessorInfo, PressedQwen, PressedQwenProcessor


class PressedQwen2_5_VLProcessor(PressedQwenProcessor, Qwen2_5_VLMultiModalProcessor):
    pass


class PressedQwen2_5_VLInfo(LibraryProcessorInfo, Qwen2_5_VLProcessingInfo):
    pass


@MULTIMODAL_REGISTRY.register_processor(PressedQwen2_5_VLProcessor, info=PressedQwen2_5_VLInfo, dummy_inputs=Qwen2_5_VLDummyInputsBuilder)
class PruneSIDQwen2_5_VLForConditionalGeneration(PressedQwen, Qwen2_5_VLForConditionalGeneration):
    # What vLLM inspects and caches by this file's hash (prunesid.families.qwen_vl.vllm_models.base.PressedQwen):
    supports_multimodal_pruning = True
    # Pixels are normalised by the processor, as in the library: vLLM's default moves that into
    # the model and asks the processor not to, which the library's torchvision-free video
    # processor (vLLM's CPU build) does not follow.
    supports_mm_device_do_normalize = False
    scaled_time = True  # a clip's time axis: tokens_per_second x second_per_grid_ts
