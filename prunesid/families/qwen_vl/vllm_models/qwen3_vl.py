"""Qwen3-VL in vLLM with a press: vLLM's ``Qwen3VLForConditionalGeneration`` with the plug-in's
sizing, press and positions (:mod:`prunesid.families.qwen_vl.vllm_models.base`).

Qwen3-VL differs in two ways the plug-in follows: a clip's prompt holds one placeholder run per
temporal group after its timestamp (``<1.0 seconds><|vision_start|>`` + N_eff of the group's
``<|video_pad|>`` + ``<|vision_end|>``), each group placed as an image of its own; and the
tower's output carries the deepstack features beside the merged tokens, whose rows are cut
with the same kept tokens (the language model adds them to its first layers).
"""

from __future__ import annotations

from functools import partial

import torch
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.family_kit.base import fed_per_view
from prunesid.families.qwen_vl.vllm_models.base import LibraryProcessorInfo, PressedQwen, PressedQwenProcessor, engine_press, fed_count, grid_of
from prunesid.vllm.settings import CONFIG_KEY


def group_counts(pressed, grid: tuple[int, int, int]) -> list[int]:
    """Tokens the press feeds per temporal group of a clip of ``grid`` (groups, rows, cols)."""
    groups, rows, cols = grid
    layout = pressed.layout
    return fed_per_view(pressed.press, [rows * cols] * groups, layout.cls_slot, layout.preset, layout.cls_attention)


def deepstack_tower(model, pixels: torch.Tensor, thw: list[int]):
    """The merged tokens ``[n, H]`` and the deepstack levels ``[n, levels x H]`` (None
    without): vLLM's Qwen3-VL towers return them side by side."""
    output = model.visual(pixels, grid_thw=torch.tensor([thw]))
    width = model.visual_dim
    return output[:, :width], (output[:, width:] if output.shape[1] > width else None)


class PressedQwen3VLProcessor(PressedQwenProcessor, Qwen3VLMultiModalProcessor):
    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        from vllm.multimodal.processing import PromptReplacement

        updates = Qwen3VLMultiModalProcessor._get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        config = self.info.get_hf_config()
        pressed = engine_press(config)
        merge = config.vision_config.spatial_merge_size
        tokenizer = self.info.get_tokenizer()

        def run(item_idx: int, modality: str, token: int):
            item = out_mm_kwargs[modality][item_idx]
            if f"{modality}_embeds" in item:
                raise ValueError(f"{CONFIG_KEY}: the Qwen-VL classes compress inside the engine and take no sent {modality} embeddings")
            grid = grid_of(item[f"{modality}_grid_thw"].data, merge)
            if modality == "image":
                return [token] * fed_count(pressed, grid, modality)
            return Qwen3VLMultiModalProcessor.get_video_repl(
                tokens_per_frame=group_counts(pressed, grid), timestamps=item["timestamps"].data, tokenizer=tokenizer,
                vision_start_token_id=config.vision_start_token_id, vision_end_token_id=config.vision_end_token_id,
                video_token_id=config.video_token_id, select_token_id=True,
            )

        return [
            PromptReplacement(
                modality=update.modality, target=update.target,
                replacement=partial(run, modality=update.modality, token=config.image_token_id if update.modality == "image" else config.video_token_id),
            )
            for update in updates
        ]


class PressedQwen3VLInfo(LibraryProcessorInfo, Qwen3VLProcessingInfo):
    pass


@MULTIMODAL_REGISTRY.register_processor(PressedQwen3VLProcessor, info=PressedQwen3VLInfo, dummy_inputs=Qwen3VLDummyInputsBuilder)
class PruneSIDQwen3VLForConditionalGeneration(PressedQwen, Qwen3VLForConditionalGeneration):
    # What vLLM inspects and caches by this file's hash (prunesid.families.qwen_vl.vllm_models.base.PressedQwen):
    supports_multimodal_pruning = True
    supported_video_pruning_methods = ("evs", "vidcom2")  # the switch's methods; the press replaces them
    supports_mm_device_do_normalize = False  # the processor normalises pixels, as in the library

    _tower = deepstack_tower
