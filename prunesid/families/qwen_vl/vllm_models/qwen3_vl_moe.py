"""Qwen3-VL-MoE in vLLM with a press: vLLM's ``Qwen3VLMoeForConditionalGeneration`` (Qwen3-VL's
tower, deepstack and clip layout over a mixture-of-experts language model) with the plug-in's
Qwen3-VL front end, press and positions (:mod:`prunesid.families.qwen_vl.vllm_models.qwen3_vl`)."""

from __future__ import annotations

from vllm.model_executor.models.qwen3_vl import Qwen3VLDummyInputsBuilder
from vllm.model_executor.models.qwen3_vl_moe import Qwen3VLMoeForConditionalGeneration, Qwen3VLMoeProcessingInfo
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.families.qwen_vl.vllm_models.qwen3_vl import PressedQwen3VLProcessor, deepstack_tower
from prunesid.families.qwen_vl.vllm_models.base import LibraryProcessorInfo, PressedQwen


class PressedQwen3VLMoeInfo(LibraryProcessorInfo, Qwen3VLMoeProcessingInfo):
    pass


@MULTIMODAL_REGISTRY.register_processor(PressedQwen3VLProcessor, info=PressedQwen3VLMoeInfo, dummy_inputs=Qwen3VLDummyInputsBuilder)
class PruneSIDQwen3VLMoeForConditionalGeneration(PressedQwen, Qwen3VLMoeForConditionalGeneration):
    # What vLLM inspects and caches by this file's hash (prunesid.families.qwen_vl.vllm_models.base.PressedQwen):
    supports_multimodal_pruning = True
    supported_video_pruning_methods = ("evs", "vidcom2")  # the switch's methods; the press replaces them
    supports_mm_device_do_normalize = False  # the processor normalises pixels, as in the library

    _tower = deepstack_tower
