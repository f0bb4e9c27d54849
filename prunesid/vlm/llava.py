"""LLaVA-1.5 and other single-view LLaVA models (CLIP with CLS, or SigLIP without)."""

from __future__ import annotations

import torch
from PIL import Image

from prunesid.geometry import PatchGrid, center_crop_grid
from prunesid.vlm.family import Family, VisionOutput, VisualRun, register_family
from prunesid.vlm.towers import check_strategy, encode_views


@register_family("llava", "LlavaForConditionalGeneration", "single view: LLaVA-1.5, SigLIP LLaVA")
class SingleView(Family):
    """One view per image: the processor's resize (+ center crop), T patches (+ CLS)."""

    cls_slot = True

    def __init__(self, model, processor):
        super().__init__(model, processor)
        config = model.config
        self.vision_tower = model.model.vision_tower
        self.patch_size = config.vision_config.patch_size
        self.feature_layer = config.vision_feature_layer
        self.strategy = config.vision_feature_select_strategy
        check_strategy(self.vision_tower, self.strategy)

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        tower = self.vision_tower
        views = pixel_inputs["pixel_values"].to(tower.device, tower.dtype)
        return encode_views(tower, views, self.feature_layer, self.strategy)

    def grids(self, image: Image.Image, pixel_inputs: dict) -> list[PatchGrid]:
        height, width = pixel_inputs["pixel_values"].shape[-2:]
        resized = _resized_size(self.processor.image_processor, image.size)
        return [center_crop_grid(image.size, resized, (width, height), self.patch_size)]

    def layout(self, projected, kept, merged, cls, pixel_inputs, cls_fed) -> VisualRun:
        # Origins in the unmodified run: the CLS at 0 when the model feeds it, patches after it.
        offset = int(cls_fed)
        parts = [projected[0], merged[0]]
        origins = [kept[0].to(torch.long) + offset, torch.full((merged[0].shape[0],), -1, dtype=torch.long)]
        if cls is not None:
            parts.insert(0, cls[:1])
            origins.insert(0, torch.tensor([0 if cls_fed else -1]))
        return VisualRun(torch.cat(parts), torch.cat([origin.cpu() for origin in origins]))


def _resized_size(image_processor, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) after the processor's resize, by the processors' own integer rule."""
    width, height = image_size
    size = image_processor.size
    if not getattr(image_processor, "do_resize", True):
        return width, height
    if "shortest_edge" in size and size["shortest_edge"]:
        short, long = sorted((width, height))
        new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    return size["width"], size["height"]
