"""LLaVA-1.5 and other single-view LLaVA models (CLIP with CLS, or SigLIP without)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunesid.geometry import PatchGrid, center_crop_grid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, register_family
from prunesid.family_kit.importance import has_cls_token
from prunesid.family_kit.towers import check_strategy, encode_views


@register_family("llava", "LlavaForConditionalGeneration", "single view: LLaVA-1.5, SigLIP LLaVA")
class SingleView(Family):
    """One view per image: the processor's resize (+ center crop), T patches (+ CLS)."""

    def __init__(self, model, processor):
        super().__init__(model, processor)
        config = model.config
        self.vision_tower = model.model.vision_tower
        self.patch_size = config.vision_config.patch_size
        self.feature_layer = config.vision_feature_layer
        self.strategy = config.vision_feature_select_strategy
        check_strategy(self.vision_tower, self.strategy)
        has_cls = has_cls_token(self.vision_tower)
        self.layout = SingleViewLayout(
            Resize.of(processor.image_processor), self.patch_size, has_cls=has_cls, cls_fed=has_cls and self.strategy == "full"
        )

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        tower = self.vision_tower
        views = pixel_inputs["pixel_values"].to(tower.device, tower.dtype)
        return encode_views(tower, views, self.feature_layer, self.strategy)


@dataclass(frozen=True)
class Resize:
    """A CLIP-style image processor's geometry: resize (shortest edge or fixed size), then an
    optional center crop. Backend-neutral: numbers from the processor's configuration."""

    size: tuple  # the processor's size dict as sorted items
    do_resize: bool
    crop: tuple[int, int] | None  # (width, height) of the center crop, None without one

    @classmethod
    def of(cls, image_processor) -> "Resize":
        crop = None
        if getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None):
            crop = (int(image_processor.crop_size["width"]), int(image_processor.crop_size["height"]))
        size = {key: value for key, value in dict(image_processor.size).items() if value}
        return cls(tuple(sorted(size.items())), bool(getattr(image_processor, "do_resize", True)), crop)

    def resized(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) after the resize, before the crop."""
        return _resize_rule(dict(self.size), self.do_resize, image_size)

    def pixels(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the pixels the tower sees for an image of ``image_size``."""
        return self.crop if self.crop is not None else self.resized(image_size)

    def grid(self, image_size: tuple[int, int], patch_size: int) -> PatchGrid:
        """The patch grid of those pixels, placed on the user's image."""
        return center_crop_grid(image_size, self.resized(image_size), self.pixels(image_size), patch_size)


class SingleViewLayout(FamilyLayout):
    """One view: the patch grid of the processed pixels, after the CLS when the model feeds it."""

    def __init__(self, resize: Resize, patch_size: int, has_cls: bool, cls_fed: bool):
        self.resize = resize
        self.patch_size = patch_size
        self.cls_slot = self.cls_attention = has_cls
        self.cls_fed = cls_fed

    def patches(self, image_size: tuple[int, int]) -> int:
        width, height = self.resize.pixels(image_size)
        return (width // self.patch_size) * (height // self.patch_size)

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        return [self.patches(image_size)]

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        return [self.resize.grid(image_size, self.patch_size)]

    def unmodified_tokens(self, image_size, modality="image") -> int:
        return self.patches(image_size) + int(self.cls_fed)

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        return views_in_sequence(kept, merged, with_cls, cls_fed, stride=None)


def views_in_sequence(kept, merged, with_cls: bool, cls_fed: bool, stride: int | None) -> FeedPlan:
    """View after view: its CLS (when passed), its kept tokens, its merged tokens. In the
    unmodified run view v starts at ``v * stride`` (CLS first when the model feeds it);
    ``stride`` None: one view."""
    views = len(kept)
    cls_rows = views if with_cls else 0
    kept_start = cls_rows + torch.tensor([0] + [int(k.numel()) for k in kept]).cumsum(0)
    merged_start = int(kept_start[-1]) + torch.tensor([0] + list(merged)).cumsum(0)
    order, origin = [], []
    for view, (index, extra) in enumerate(zip(kept, merged)):
        start = view * (stride or 0)
        if with_cls:
            order.append(torch.tensor([view]))
            origin.append(torch.tensor([start if cls_fed else -1]))
        order.append(torch.arange(int(kept_start[view]), int(kept_start[view + 1])))
        origin.append(start + int(cls_fed) + index.cpu().long())
        order.append(torch.arange(int(merged_start[view]), int(merged_start[view + 1])))
        origin.append(torch.full((extra,), -1, dtype=torch.long))
    return FeedPlan(torch.cat(order).long(), torch.cat(origin).long())


def _resize_rule(size: dict, do_resize: bool, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) after a CLIP-style processor's resize, by the processors' own integer rule."""
    width, height = image_size
    if not do_resize:
        return width, height
    if "shortest_edge" in size and size["shortest_edge"]:
        short, long = sorted((width, height))
        new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    return size["width"], size["height"]
