"""The family interface: everything about a VLM that differs between model families.

A family knows where a model's vision tokens come from (processor, tower, feature layer,
CLS, importance), where they sit on the image (patch grids), which of them may be dropped,
how kept tokens become the language model's input (projection, packing, placeholder runs)
and which position each one had in the unmodified model's input. The generic
:class:`prunesid.vlm.VLM` never branches on a family; a new family is one module with one
:class:`Family` subclass registered with :func:`register_family`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid.geometry import PatchGrid


@dataclass
class VisionOutput:
    """One image after the vision tower, as a family hands it to the VLM."""

    features: torch.Tensor  # [V, T, D] tokens a press chooses from (no CLS)
    cls: torch.Tensor | None  # [V, D] the tower's CLS token at the feature layer, None without one
    importance: torch.Tensor | None  # [V, T] CLS attention summed over heads (None: no CLS)
    cls_fed: bool  # the unmodified model feeds the CLS to the LLM (vision_feature_select_strategy "full")
    keys: torch.Tensor | None = None  # [V, T, d] the same layer's attention keys, mean over heads (VisionZip)


@dataclass
class VisualRun:
    """What the language model receives for one image."""

    embeds: torch.Tensor  # [n, H] in the LLM's width
    # [n] long: each token's index in the unmodified model's run for this image (-1 for a
    # token the unmodified model does not have, e.g. a merged token): what position-aware
    # families (M-RoPE) need to give kept tokens their original positions.
    origin: torch.Tensor


class Family(ABC):
    """Base of the model families. ``model`` is the transformers model, ``processor`` its processor."""

    # The selection preset this family's models use by default (prunesid/presets.py).
    preset: str = "llava"
    # Whether the family's token layout has a slot for the tower's CLS token.
    cls_slot: bool = True
    # The modality key under which the model takes precomputed features in generate().
    modality: str = "image"
    # Frames a video is sampled to; None: the family's models take images only.
    num_frames: int | None = None

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    @property
    def placeholder_token_id(self) -> int:
        """The token id the chat template puts where an image's features go."""
        return self.model.config.image_token_id

    def placeholder_for(self, modality: str) -> int:
        """The placeholder token of an input of ``modality`` ("image" or "video")."""
        if modality != "image":
            raise ValueError(f"{type(self).__name__} models take images only, not {modality}s")
        return self.placeholder_token_id

    def preprocess(self, image: Image.Image) -> dict:
        """The image processor's output for one image (pixel_values, image_sizes, ...)."""
        return dict(self.processor.image_processor(images=image, return_tensors="pt"))

    def preprocess_video(self, frames: list[Image.Image]) -> dict:
        """The processor's output for one clip's sampled frames; ``encode`` then returns one
        view per frame (families with ``num_frames``)."""
        raise ValueError(f"{type(self).__name__} models take images only, not videos")

    @abstractmethod
    def encode(self, pixel_inputs: dict) -> VisionOutput:
        """Run the vision tower on one image's views."""

    @abstractmethod
    def grids(self, image: Image.Image, pixel_inputs: dict) -> list[PatchGrid]:
        """One PatchGrid per view: where each token sits on the user's image."""

    def valid_patches(self, pixel_inputs: dict) -> torch.Tensor | None:
        """``[V, T]`` bool: tokens that may be kept (the rest never reach the LLM), None for all."""
        return None

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``[n, D] -> [n, H]``: tower features into the LLM's width (per token)."""
        return self.model.model.multi_modal_projector(features[None])[0]

    @abstractmethod
    def layout(
        self, projected: list[torch.Tensor], kept: list[torch.Tensor], merged: list[torch.Tensor],
        cls: torch.Tensor | None, pixel_inputs: dict, cls_fed: bool,
    ) -> VisualRun:
        """What the LLM receives for one image, given per view the projected kept tokens (in
        output order), their token indices and the projected merged tokens, plus the projected
        CLS of every view (``[V, H]``, or None) and whether the unmodified model feeds a CLS."""

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        """Keyword arguments for the model's forward / generate besides input_ids: by default
        the features handed over precomputed, so the tower does not run again."""
        if not runs:
            return {}
        features = [run.embeds for run in runs]
        return {"mm_encoder_outputs": {self.modality: BaseModelOutputWithPooling(pooler_output=features)}}


@dataclass(frozen=True)
class FamilySpec:
    model_type: str  # config.model_type of the checkpoints
    model_class: str  # the transformers class that loads them
    family: type[Family]
    description: str


FAMILIES: dict[str, FamilySpec] = {}


def register_family(model_type: str, model_class: str, description: str) -> Callable[[type[Family]], type[Family]]:
    """The one registry of supported model types (loading, errors and docs read it)."""

    def register(cls: type[Family]) -> type[Family]:
        FAMILIES[model_type] = FamilySpec(model_type, model_class, cls, description)
        return cls

    return register


def supported_families() -> str:
    return ", ".join(f"{spec.model_type} ({spec.description})" for spec in FAMILIES.values())
