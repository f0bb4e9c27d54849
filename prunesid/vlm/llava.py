"""LLaVA-1.5 and other single-view LLaVA models (CLIP with CLS, or SigLIP without)."""

from __future__ import annotations

import torch
from PIL import Image

from prunesid.geometry import PatchGrid, center_crop_grid


class SingleView:
    """One view per image: the processor's resize (+ center crop), T patches (+ CLS)."""

    cls_slot = True

    def __init__(self, patch_size: int):
        self.patch_size = patch_size

    def pixel_views(self, pixel_inputs: dict) -> torch.Tensor:
        return pixel_inputs["pixel_values"]

    def grids(self, image_processor, image: Image.Image, pixel_inputs: dict) -> list[PatchGrid]:
        height, width = pixel_inputs["pixel_values"].shape[-2:]
        return [center_crop_grid(image.size, _resized_size(image_processor, image.size), (width, height), self.patch_size)]

    def valid_patches(self, pixel_inputs: dict) -> None:
        return None

    def layout(self, model, projected_views, kept, cls, pixel_inputs) -> torch.Tensor:
        tokens = projected_views[0]
        return tokens if cls is None else torch.cat([cls[:1], tokens])


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
