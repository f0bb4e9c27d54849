"""Qwen3.5 in vLLM with a press: vLLM's ``Qwen3_5ForConditionalGeneration`` (Qwen3-VL's tower
without deepstack over a hybrid language model of Gated DeltaNet and full-attention layers)
with the plug-in's Qwen3-VL front end, press and positions (:mod:`prunesid.families.qwen_vl.vllm_models.qwen3_vl`)."""

from __future__ import annotations

from vllm.model_executor.models.qwen3_5 import Qwen3_5ForConditionalGeneration, Qwen3_5ProcessingInfo
from vllm.model_executor.models.qwen3_vl import Qwen3VLDummyInputsBuilder
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.families.qwen_vl.vllm_models.qwen3_vl import PressedQwen3VLProcessor, deepstack_tower
from prunesid.families.qwen_vl.vllm_models.base import LibraryProcessorInfo, PressedQwen


class PressedQwen3_5ProcessingInfo(LibraryProcessorInfo, Qwen3_5ProcessingInfo):
    pass


@MULTIMODAL_REGISTRY.register_processor(PressedQwen3VLProcessor, info=PressedQwen3_5ProcessingInfo, dummy_inputs=Qwen3VLDummyInputsBuilder)
class PruneSIDQwen3_5ForConditionalGeneration(PressedQwen, Qwen3_5ForConditionalGeneration):
    # What vLLM inspects and caches by this file's hash (prunesid.families.qwen_vl.vllm_models.base.PressedQwen):
    supports_multimodal_pruning = True
    supported_video_pruning_methods = ("evs", "vidcom2")  # the switch's methods; the press replaces them
    supports_mm_device_do_normalize = False  # the processor normalises pixels, as in the library

    _tower = deepstack_tower  # no deepstack levels: the merged tokens alone
