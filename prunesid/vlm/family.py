"""What differs between model families: how an image becomes views, and how kept tokens
are laid out for the language model. Everything else (encoding, selection, generation) is
shared in :mod:`prunesid.vlm.model`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from PIL import Image

from prunesid.geometry import PatchGrid


class Family(Protocol):
    # Whether this family's token layout has a slot for the tower's CLS token.
    cls_slot: bool

    def pixel_views(self, pixel_inputs: dict) -> torch.Tensor:
        """``[V, C, H, W]``: the views of one image the tower encodes."""

    def grids(self, image_processor, image: Image.Image, pixel_inputs: dict) -> list[PatchGrid]:
        """One PatchGrid per view, in the order of :meth:`pixel_views`."""

    def valid_patches(self, pixel_inputs: dict) -> torch.Tensor | None:
        """``[V, T]`` bool: patches that may be selected (the rest never reach the LLM), or
        None when every patch may."""

    def layout(
        self, model, projected_views: list[torch.Tensor], kept: list[torch.Tensor], cls: torch.Tensor | None,
        pixel_inputs: dict,
    ) -> torch.Tensor:
        """``[n, H]``: what the LLM receives for one image, given each view's projected kept
        tokens (in output order), their patch indices and the projected CLS (or None)."""
