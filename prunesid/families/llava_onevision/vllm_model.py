"""LLaVA-OneVision in vLLM with a press: N tokens per view (the base view, each tile that keeps
tokens, each frame of a clip), plus the newline tokens of the model's own packing.

vLLM's ``LlavaOnevisionForConditionalGeneration`` with the placeholder counts of the library's
OneVision layout in its default ``newlines="rows"`` (docs/models.md): one ``image_newline``
after every row of the fed tile grid, as the unmodified model feeds it, so a press that keeps
every token feeds exactly vLLM's own count; a clip ends with its one newline. The embeddings:
each image's views through vLLM's SigLIP tower up to the feature layer and the projector, the
tiles packed by vLLM's own unpadding (and downscale beyond anyres_max), cut back into views
(``OneVisionLayout.views_of``) so the press chooses only among the tokens the model feeds;
each clip's frames pooled as vLLM pools them. SigLIP has no CLS: importance is the PSCA
score, and presses that need the CLS attention (VisionZip) stop the engine at start.
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageEmbeddingInputs,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.model_executor.models.siglip import SiglipVisionModel
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.family_kit.base import EncodedMedia
from prunesid.families.llava_onevision.adapter import OneVisionLayout, max_tiles
from prunesid.families.llava.vllm_model import EngineFamily, SentEmbeddings, TakesSentEmbeddings, pressed_embeddings
from prunesid.vllm.settings import CONFIG_KEY, EnginePress

NEWLINES = "rows"  # the model's own packing: a press keeping everything feeds vLLM's own count


def engine_press(hf_config) -> EnginePress:
    """The run's press and OneVision layout, checked (ValueError naming the setting)."""
    vision = hf_config.vision_config
    if getattr(vision, "model_type", None) != "siglip_vision_model":
        raise ValueError(
            f"{CONFIG_KEY}: the vLLM plug-in supports LLaVA-OneVision with a SigLIP tower, this model's is {getattr(vision, 'model_type', None)!r}"
        )
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ValueError(f"{CONFIG_KEY}: one vision feature layer is supported, this model has {hf_config.vision_feature_layer!r}")
    if hf_config.vision_feature_select_strategy != "full":
        # 'default' would drop SigLIP's first patch (it has no CLS): what the library refuses too.
        raise ValueError(f"{CONFIG_KEY}: LLaVA-OneVision's SigLIP tower has no CLS token; vision_feature_select_strategy 'full' only")
    side = vision.image_size
    try:
        tiles = max_tiles(hf_config.vision_aspect_ratio)
    except ValueError as error:
        raise ValueError(f"{CONFIG_KEY}: {error}") from None
    layout = OneVisionLayout(hf_config.image_grid_pinpoints, side, side // vision.patch_size, tiles, 1, NEWLINES)
    return EnginePress.checked(getattr(hf_config, CONFIG_KEY, None), layout, (side, side))


def clip_layout(layout: OneVisionLayout, frames: int) -> OneVisionLayout:
    """``layout`` for a clip of ``frames`` frames (vLLM takes clips of any length)."""
    return OneVisionLayout(layout.pinpoints, layout.tile_size, layout.side, layout.max_tiles, frames, layout.newlines)


class PressedOnevisionInfo(LlavaOnevisionProcessingInfo):
    """The front end: views x N + the newlines per image, frames x N + 1 per clip."""

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        return engine_press(self.get_hf_config()).fed_tokens((image_width, image_height))

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        engine = engine_press(self.get_hf_config())
        return clip_layout(engine.layout, num_frames).fed_tokens((image_width, image_height), engine.press, "video")


class _OnevisionEngineFamily(EngineFamily):
    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features  # projected before packing, as the model does: the views are in the LLM's width

    def extra_embeddings(self) -> torch.Tensor:
        return self.model.image_newline[None]


@MULTIMODAL_REGISTRY.register_processor(
    LlavaOnevisionMultiModalProcessor, info=PressedOnevisionInfo, dummy_inputs=LlavaOnevisionDummyInputsBuilder
)
class PruneSIDLlavaOnevisionForConditionalGeneration(TakesSentEmbeddings, LlavaOnevisionForConditionalGeneration):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        checked = engine_press(vllm_config.model_config.hf_config)  # before any weight is built
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if not isinstance(self.vision_tower, SiglipVisionModel):
            raise ValueError(f"{CONFIG_KEY}: the vLLM plug-in supports SigLIP towers here, got {type(self.vision_tower).__name__}")
        self.engine_press = checked
        self.press_family = _OnevisionEngineFamily(self, checked.layout)

    def _process_image_input(self, image_input):
        if isinstance(image_input, SentEmbeddings):
            return image_input.data
        if isinstance(image_input, LlavaOnevisionImageEmbeddingInputs):
            return image_input["data"]
        pixels, sizes = image_input["pixel_values"], image_input["image_sizes"]
        # One image at a time: what an image keeps never depends on the batch it came in.
        return [self._pressed_image(pixels[i], sizes[i]) for i in range(len(pixels))]

    def _process_video_pixels(self, inputs):
        return [self._pressed_clip(clip) for clip in inputs["pixel_values_videos"]]

    def _projected(self, views: torch.Tensor) -> torch.Tensor:
        """``[V, 3, H, W]`` -> ``[V, T, H_llm]``: vLLM's tower (built up to the feature layer), projected."""
        return self.multi_modal_projector(self._image_pixels_to_features(self.vision_tower, views))

    @torch.no_grad()
    def _pressed_image(self, views: torch.Tensor, size_hw: torch.Tensor) -> torch.Tensor:
        height, width = (int(v) for v in size_hw)
        layout = self.engine_press.layout
        count = image_size_to_num_patches(image_size=[height, width], grid_pinpoints=layout.pinpoints, patch_size=layout.tile_size)
        # vLLM's own packing without newlines: the base view, then the unpadded tile grid.
        packed = self._merge_image_patch_embeddings(
            size_hw.cpu(), self._projected(views[:count]), image_newline=None,
            vision_aspect_ratio=self.config.vision_aspect_ratio, strategy="spatial_unpad",
        )
        size = (width, height)
        encoded = EncodedMedia(
            key="", image=Image.new("RGB", size), features=layout.views_of(packed, size), cls=None, cls_fed=False,
            importance=None, grids=layout.grids(size), valid=layout.valid_patches(size), pixel_inputs={}, vision_ms=0.0,
        )
        return pressed_embeddings(self.press_family, encoded, self.engine_press.press)

    @torch.no_grad()
    def _pressed_clip(self, frames: torch.Tensor) -> torch.Tensor:
        """A clip ``[F, 3, H, W]``: every frame pooled as vLLM pools it, then the press per frame."""
        pooled = self.apply_pooling(self._projected(frames))
        layout = clip_layout(self.engine_press.layout, int(frames.shape[0]))
        size = (int(frames.shape[-1]), int(frames.shape[-2]))  # the frames as the tower sees them: the grids' shapes are what a press reads
        encoded = EncodedMedia(
            key="", image=Image.new("RGB", size), features=pooled, cls=None, cls_fed=False, importance=None,
            grids=layout.grids(size, "video"), valid=None, pixel_inputs={}, vision_ms=0.0, modality="video",
        )
        return pressed_embeddings(self.press_family, encoded, self.engine_press.press)
