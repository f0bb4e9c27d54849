"""LLaVA-NeXT in vLLM with a press: N tokens per view (the base view and each anyres tile).

vLLM's ``LlavaNextForConditionalGeneration`` with the placeholder count of the library's
anyres layout (views x N, no newline token: the layout ``newlines="authors"``, docs/models.md)
and image embeddings made by the library's press path on each view of vLLM's tower, choosing
only among the patches the model's unpadding keeps (``valid_patches``).
"""

from __future__ import annotations

import torch
from PIL import Image
from vllm.model_executor.models.llava import LlavaDummyInputsBuilder
from vllm.model_executor.models.llava_next import (
    LlavaNextForConditionalGeneration,
    LlavaNextImageEmbeddingInputs,
    LlavaNextMultiModalProcessor,
    LlavaNextProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.family_kit.base import EncodedMedia
from prunesid.families.llava_next.adapter import AnyResLayout
from prunesid.families.llava.vllm_model import EngineFamily, SentEmbeddings, TakesSentEmbeddings, encode_tower, pressed_embeddings
from prunesid.vllm.settings import CONFIG_KEY, EnginePress


def engine_press(hf_config) -> EnginePress:
    """The run's press and anyres layout, checked (ValueError naming the setting)."""
    vision = hf_config.vision_config
    if getattr(vision, "model_type", None) != "clip_vision_model":
        raise ValueError(
            f"{CONFIG_KEY}: the vLLM plug-in supports LLaVA-NeXT with a CLIP tower, this model's is {getattr(vision, 'model_type', None)!r}"
        )
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ValueError(f"{CONFIG_KEY}: one vision feature layer is supported, this model has {hf_config.vision_feature_layer!r}")
    if hf_config.vision_feature_select_strategy != "default":
        raise ValueError(f"{CONFIG_KEY}: LLaVA-NeXT packs tiles of patches without the CLS; strategy 'default' only")
    side = vision.image_size
    layout = AnyResLayout(hf_config.image_grid_pinpoints, side, side // vision.patch_size, "authors")
    return EnginePress.checked(getattr(hf_config, CONFIG_KEY, None), layout, (side, side))


class PressedLlavaNextInfo(LlavaNextProcessingInfo):
    """The front end: views x N per image."""

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        return engine_press(self.get_hf_config()).fed_tokens((image_width, image_height))


class _NextEngineFamily(EngineFamily):
    def extra_embeddings(self) -> torch.Tensor:
        return self.model.image_newline[None]


@MULTIMODAL_REGISTRY.register_processor(LlavaNextMultiModalProcessor, info=PressedLlavaNextInfo, dummy_inputs=LlavaDummyInputsBuilder)
class PruneSIDLlavaNextForConditionalGeneration(TakesSentEmbeddings, LlavaNextForConditionalGeneration):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        checked = engine_press(vllm_config.model_config.hf_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.engine_press = checked
        self.press_family = _NextEngineFamily(self, checked.layout)

    def _process_image_input(self, image_input):
        if isinstance(image_input, SentEmbeddings):
            return image_input.data
        if isinstance(image_input, LlavaNextImageEmbeddingInputs):
            return image_input["data"]
        pixels, sizes = image_input["pixel_values"], image_input["image_sizes"]
        return [self._pressed_image(pixels[i], tuple(int(v) for v in sizes[i])) for i in range(len(pixels))]

    @torch.no_grad()
    def _pressed_image(self, views: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        height, width = size_hw
        layout = self.engine_press.layout
        count = len(layout.selectable_tokens((width, height)))
        features, cls, importance, keys = encode_tower(self.vision_tower, views[:count])
        encoded = EncodedMedia(
            key="", image=Image.new("RGB", (width, height)), features=features, cls=cls, cls_fed=False,
            importance=importance, grids=layout.grids((width, height)), valid=layout.valid_patches((width, height)),
            pixel_inputs={}, vision_ms=0.0, keys=keys,
        )
        return pressed_embeddings(self.press_family, encoded, self.engine_press.press)
