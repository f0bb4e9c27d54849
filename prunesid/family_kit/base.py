"""The family interface: everything about a VLM that differs between model families.

A family has two halves:

- :class:`FamilyLayout`, backend-neutral: built from plain numbers of the checkpoint's
  configuration (patch size, tile pinpoints, resize limits), it knows the views of an image,
  which tokens of each may be dropped, how kept tokens are laid out for the language model
  (order, newline slots, each token's position in the unmodified run) and how many tokens are
  fed, all from the image size alone: :meth:`FamilyLayout.fed_tokens` sizes a press's output
  before any pixel is encoded (what a serving engine needs to reserve placeholders).
- :class:`Family`, the adapter to one model object (transformers here): it preprocesses
  pixels, runs the vision tower, projects tokens into the language model's width and says
  which keyword arguments ``generate`` takes them through. It holds its layout as
  ``family.layout``.

The generic :class:`prunesid.vlm.VLM` and :mod:`prunesid.pipeline` never branch on a family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid.geometry import PatchGrid
from prunesid.presets import get_preset
from prunesid.selection import redundancy
from prunesid.video import Video


@dataclass
class VisionOutput:
    """One image (or clip) after the vision tower, as a family hands it to the VLM."""

    features: torch.Tensor  # [V, T, D] tokens a press chooses from (no CLS)
    cls: torch.Tensor | None  # [V, D] the tower's CLS token at the feature layer, None without one
    importance: torch.Tensor | None  # [V, T] CLS attention summed over heads (None: no CLS)
    cls_fed: bool  # the unmodified model feeds the CLS to the LLM (vision_feature_select_strategy "full")
    keys: torch.Tensor | None = None  # [V, T, d] the same layer's attention keys, mean over heads (VisionZip)
    # Extra per-token outputs the LLM takes beside the features, cut with the same kept tokens:
    # Qwen3-VL's deepstack features, one [V, T, H] tensor per deepstack layer.
    deepstack: list[torch.Tensor] | None = None


@dataclass
class VisualRun:
    """What the language model receives for one image."""

    embeds: torch.Tensor  # [n, H] in the LLM's width
    # [n] long: each token's index in the unmodified model's run for this image (-1 for a
    # token the unmodified model does not have, e.g. a merged token): what position-aware
    # families (M-RoPE) need to give kept tokens their original positions.
    origin: torch.Tensor


@dataclass
class EncodedMedia:
    """One image or video clip after the vision tower: what compression, layout and drawing need."""

    key: str  # content hash: the cache key
    image: Image.Image  # the RGB image as the user gave it (a clip: its first frame)
    features: torch.Tensor  # [V, T, D] tokens a press chooses from (feature layer, no CLS)
    cls: torch.Tensor | None  # [V, D] feature-layer CLS token, None for towers without one
    cls_fed: bool  # the unmodified model feeds that CLS to the LLM (strategy "full", a video)
    importance: torch.Tensor | None  # [V, T] CLS attention summed over heads (None: PSCA score)
    grids: list[PatchGrid]  # where each view's tokens sit on the image
    valid: torch.Tensor | None  # [V, T] bool: selectable tokens (None: all), e.g. not padding
    pixel_inputs: dict  # the processor's output (pixel_values, image_sizes, ...)
    vision_ms: float
    keys: torch.Tensor | None = None  # [V, T, d] feature layer's attention keys, mean over heads (VisionZip)
    modality: str = "image"  # or "video": the views are then the clip's sampled frames
    video: Video | None = None  # a video's sampled frames and where they sit in the clip
    deepstack: list[torch.Tensor] | None = None  # per deepstack layer [V, T, H] (Qwen3-VL)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image (a clip: of its frames): what the layout reads."""
        return self.image.size

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    @property
    def num_tokens(self) -> int:
        """Tokens across all views (V x T), padding included."""
        return self.features.shape[0] * self.features.shape[1]

    def information(self) -> list[float]:
        """phi = 1 - rho of each view, over its selectable tokens."""
        return (1.0 - redundancy(self.features, self.valid)).tolist()


@dataclass
class FeedPlan:
    """Backend-neutral: the rows the language model receives for one input, in order.

    ``order`` indexes the stacked sources ``[CLS of every view (when passed), kept tokens of
    view 0, 1, ..., merged tokens of view 0, 1, ..., the family's extra embeddings (e.g.
    LLaVA-NeXT's image_newline)]``; ``origin`` is each row's index in the unmodified run
    (-1: a token the unmodified model does not have).
    """

    order: torch.Tensor  # [n] long
    origin: torch.Tensor  # [n] long

    def __len__(self) -> int:
        return int(self.order.numel())


class FamilyLayout(ABC):
    """The backend-neutral half of a family: views, selectable tokens, layout and counts.

    Subclasses are built from configuration numbers only (no model object). ``image_size``
    is always the user's image (or a clip's frame) as ``(width, height)``.
    """

    # The selection preset this family's models use by default (prunesid/presets.py).
    preset: str = "llava"
    # The tower has a CLS token and the layout has a slot for it (a press may pass it through).
    cls_slot: bool = False
    # The tower gives the CLS token's attention and keys (what e.g. VisionZip requires).
    cls_attention: bool = False

    @abstractmethod
    def selectable_tokens(self, image_size: tuple[int, int], modality: str = "image") -> list[int]:
        """Per view: how many tokens a press may choose from (its length is the view count)."""

    @abstractmethod
    def grids(self, image_size: tuple[int, int], modality: str = "image") -> list[PatchGrid]:
        """One PatchGrid per view: where each token sits on the user's image."""

    @abstractmethod
    def unmodified_tokens(self, image_size: tuple[int, int], modality: str = "image") -> int:
        """Visual tokens the unmodified model feeds for one input of this size."""

    def extra_tokens(self, image_size: tuple[int, int], modality: str = "image") -> int:
        """Tokens a compressed run feeds besides the views' own (e.g. newline tokens)."""
        return 0

    def valid_patches(self, image_size: tuple[int, int], modality: str = "image") -> torch.Tensor | None:
        """``[V, T]`` bool: tokens that may be kept (the rest never reach the LLM), None for all."""
        return None

    @abstractmethod
    def arrange(
        self, kept: list[torch.Tensor], merged: list[int], with_cls: bool, cls_fed: bool,
        image_size: tuple[int, int], modality: str = "image", compressed: bool = True,
    ) -> FeedPlan:
        """The layout of one input: per view the kept token indices (in the press's output
        order) and the number of merged tokens; whether every view's CLS is among the
        sources; whether the unmodified model feeds a CLS; ``compressed`` False for the
        unmodified run (every token kept, the model's own packing)."""

    def fed_tokens(self, image_size: tuple[int, int], press=None, modality: str = "image") -> int:
        """Exactly how many visual tokens the language model receives for one input of
        ``image_size`` under ``press`` (None: the unmodified model), without encoding it.

        Every press keeps, per view, ``min(N_eff - reserved, selectable)`` tokens plus the
        ``reserved`` ones (the CLS it passes through), N_eff being the budget read through
        the preset. A dynamic budget (PruneSID-Dyn) depends on the image's content and
        cannot be sized in advance: ValueError.
        """
        _check_size(image_size)
        if press is None:
            return self.unmodified_tokens(image_size, modality)
        per_view = fed_per_view(press, self.selectable_tokens(image_size, modality), self.cls_slot, self.preset, self.cls_attention)
        return sum(per_view) + self.extra_tokens(image_size, modality)


def fed_per_view(press, selectable: list[int], cls_slot: bool, preset: str, cls_attention: bool = True) -> list[int]:
    """Tokens a fixed-budget ``press`` feeds per view of ``selectable`` tokens (see
    :meth:`FamilyLayout.fed_tokens`); ValueError where the press cannot run at all."""
    from prunesid.methods.base import VisionTokens

    if not press.budget_is_fixed:
        raise ValueError(
            f"{type(press).__name__} sets each view's budget from its content (a dynamic budget): "
            "its token count cannot be known before encoding; use a fixed budget to pre-size"
        )
    # What the tokens of this family will carry, without any tensor: the press's own rules.
    present = torch.empty(0, 0) if cls_attention else None
    tokens = VisionTokens(
        features=torch.empty(0, 0, 0), importance=present, keys=present, cls_slot=cls_slot, grid_shapes=[], project=lambda x: x
    )
    missing = press.missing_inputs(tokens) if hasattr(type(press), "info") else []
    if missing:
        raise ValueError(f"{type(press).__name__} cannot run on this model: it needs {' and '.join(missing)}")
    reserved = press.reserved(tokens)
    policy = get_preset(press.selection_preset(preset))
    counts = []
    for count in selectable:
        budget = policy.effective_budget(press.budget, count)
        if budget <= reserved:
            raise ValueError(f"budget must exceed the {reserved} reserved token(s) (the CLS), got {press.budget}")
        counts.append(reserved + min(budget - reserved, count))
    return counts


def _check_size(image_size) -> None:
    if (
        not isinstance(image_size, (tuple, list)) or len(image_size) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in image_size)
    ):
        raise ValueError(f"image_size must be (width, height) in pixels, two positive integers, got {image_size!r}")


class Family(ABC):
    """The adapter half: one model object (``model``) and its ``processor``; its
    backend-neutral layout is ``self.layout`` (a :class:`FamilyLayout`)."""

    # The modality key under which the model takes precomputed features in generate().
    modality: str = "image"
    # The processor's outputs that describe pixels besides pixel_values*: press_applied replaces
    # them all with the features.
    pixel_input_keys: tuple[str, ...] = ("image_sizes",)
    # Frames a video is sampled to; None: the family's models take images only.
    num_frames: int | None = None
    layout: FamilyLayout

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    @property
    def preset(self) -> str:
        return self.layout.preset

    @property
    def cls_slot(self) -> bool:
        return self.layout.cls_slot

    def fed_tokens(self, image_size: tuple[int, int], press=None, modality: str = "image") -> int:
        """See :meth:`FamilyLayout.fed_tokens`."""
        return self.layout.fed_tokens(image_size, press, modality)

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

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """A processor's batched output (several images) as ``(modality, pixel inputs,
        image size)`` per input, in prompt order: what :func:`prunesid.press_applied` encodes.
        By default ``pixel_values`` (and ``image_sizes``) row by row; the size is
        ``image_sizes`` where given, else the processed pixels' own."""
        pixels = inputs.get("pixel_values")
        if pixels is None:
            return []
        sizes = inputs.get("image_sizes")
        items = []
        for row in range(pixels.shape[0]):
            item = {"pixel_values": pixels[row:row + 1]}
            if sizes is not None:
                item["image_sizes"] = sizes[row:row + 1]
                height, width = (int(v) for v in sizes[row])
            else:
                height, width = pixels.shape[-2:]
            items.append(("image", item, (int(width), int(height))))
        return items

    @abstractmethod
    def encode(self, pixel_inputs: dict) -> VisionOutput:
        """Run the vision tower on one image's views."""

    def grids(self, image: Image.Image, pixel_inputs: dict | None = None, modality: str = "image") -> list[PatchGrid]:
        """One PatchGrid per view: where each token sits on the user's image (the layout's)."""
        return self.layout.grids(image.size, modality)

    def expand_prompt(self, prompt_ids: torch.Tensor, media: list) -> torch.Tensor:
        """``prompt_ids`` with any text the model's processor adds around an input's
        placeholder (e.g. Qwen3-VL's frame timestamps); unchanged by default."""
        return prompt_ids

    def processor_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """A processor's output ids ``[L]`` with each modality's runs in that modality's own
        placeholder (:meth:`placeholder_for`); the inverse of :meth:`model_input_ids`,
        unchanged by default."""
        return input_ids

    def model_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The laid-out prompt as the model reads it; unchanged by default. (InternVL scatters
        a clip's frames into the image placeholder: while runs are set, its clips keep their
        own placeholder so each modality's runs are told apart.)"""
        return input_ids

    def placeholder_runs(self, encoded, run: VisualRun) -> tuple[list[int], list[int]]:
        """The placeholder runs of one input in the prompt: the unmodified model's length of
        each and how many of ``run``'s tokens go into each. By default one run per input."""
        return [self.layout.unmodified_tokens(encoded.image_size, encoded.modality)], [int(run.embeds.shape[0])]

    def valid_patches(self, pixel_inputs: dict, image_size: tuple[int, int], modality: str = "image") -> torch.Tensor | None:
        """``[V, T]`` bool: tokens that may be kept (None for all), from the layout."""
        return self.layout.valid_patches(image_size, modality)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``[n, D] -> [n, H]``: tower features into the LLM's width (per token)."""
        return self.model.model.multi_modal_projector(features[None])[0]

    def extra_embeddings(self) -> torch.Tensor | None:
        """``[S, H]``: the embeddings a layout may place besides visual tokens (LLaVA-NeXT's
        image_newline), None when the layout places none."""
        return None

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        """Keyword arguments for the model's forward / generate besides input_ids: by default
        the features handed over precomputed, so the tower does not run again."""
        if not runs:
            return {}
        features = [run.embeds for run in runs]
        return {"mm_encoder_outputs": {self.modality: BaseModelOutputWithPooling(pooler_output=features)}}


@dataclass(frozen=True)
class FamilySpec:
    """A supported model type: its family and how its checkpoints are loaded.

    ``model_class`` is the class whose ``from_pretrained`` loads a checkpoint: a class, or
    the name of a transformers class (looked up only when a checkpoint is loaded). A family
    whose models live outside transformers gives a ``loader`` instead:
    ``loader(path, dtype) -> (model, processor)``, with its own checkpoint format.
    """

    model_type: str  # config.model_type of the checkpoints
    model_class: type | str | None  # what loads them (None with a loader)
    family: type[Family]
    description: str
    loader: Callable | None = None


FAMILIES: dict[str, FamilySpec] = {}


def register_family(
    model_type: str, model_class: type | str | None, description: str, *, loader: Callable | None = None,
) -> Callable[[type[Family]], type[Family]]:
    """The one registry of supported model types (loading, errors and docs read it)."""
    if (model_class is None) == (loader is None):
        raise ValueError(f"family {model_type!r}: give a model_class or a loader (one of them)")

    def register(cls: type[Family]) -> type[Family]:
        FAMILIES[model_type] = FamilySpec(model_type, model_class, cls, description, loader)
        return cls

    return register


def supported_families() -> str:
    from prunesid.family_kit import load_families

    load_families()
    return ", ".join(f"{spec.model_type} ({spec.description})" for spec in FAMILIES.values())
