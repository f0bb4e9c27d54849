"""LLaVA-1.5 in vLLM with a press: the model class the plug-in registers.

It is vLLM's own ``LlavaForConditionalGeneration`` with two changes:

- the front end's placeholder count per image (``get_num_image_tokens``) is the family's fed
  count under the run's press (:meth:`prunesid.family_kit.base.FamilyLayout.fed_tokens`);
- the image embeddings: the tower runs up to the feature layer, the CLS attention row of that
  layer is recomputed from its own projections (reduced over tensor-parallel ranks,
  :mod:`prunesid.vllm.heads`), and the press of the registry chooses, through the library's
  one press path (:func:`prunesid.pipeline.compress` and :func:`~prunesid.pipeline.visual_run`).

Embeddings sent by a client (``image_embeds``, the embeddings route) pass through untouched.
"""

from __future__ import annotations

import json
import os

import torch
from PIL import Image
from vllm.model_executor.models.clip import CLIPVisionModel
from vllm.model_executor.models.llava import (
    LlavaDummyInputsBuilder,
    LlavaForConditionalGeneration,
    LlavaImageEmbeddingInputs,
    LlavaMultiModalProcessor,
    LlavaProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from prunesid.pipeline import compress, visual_run
from prunesid.family_kit.base import EncodedMedia, Family, VisualRun
from prunesid.families.llava.adapter import Resize, SingleViewLayout
from prunesid.vllm.heads import layer_importance
from prunesid.vllm.settings import CONFIG_KEY, EnginePress

# Where the engine appends, per image, the token indices it kept (JSON lines): a diagnostic
# for comparing the engine's choice with the library's (tests_vllm).
RECORD_ENV = "PRUNESID_VLLM_RECORD"


class SentEmbeddings:
    """Embeddings a client sent (the embeddings route), one ``[n_i, H]`` tensor per image."""

    def __init__(self, data: list[torch.Tensor]):
        self.data = data


def sent_embeddings(kwargs: dict) -> SentEmbeddings | None:
    """The ``image_embeds`` of an encoder batch as a list, whatever their lengths. vLLM's
    own LLaVA schema wants one length for the whole batch, which refuses PruneSID-Dyn's
    embeddings of two images (or two requests) with different counts."""
    embeds = kwargs.get("image_embeds")
    if embeds is None or kwargs.get("pixel_values") is not None:
        return None
    items = list(embeds) if isinstance(embeds, (list, tuple)) else list(embeds.unbind(0))
    for item in items:
        if item.dim() != 2:
            raise ValueError(f"image_embeds must be one [n, hidden] tensor per image, got shape {list(item.shape)}")
    return SentEmbeddings(items)


def engine_press(hf_config) -> EnginePress:
    """The run's press and LLaVA-1.5 layout, checked (ValueError naming the setting)."""
    vision = hf_config.vision_config
    if getattr(vision, "model_type", None) != "clip_vision_model":
        raise ValueError(
            f"{CONFIG_KEY}: the vLLM plug-in supports LLaVA with a CLIP tower, this model's is {getattr(vision, 'model_type', None)!r}"
        )
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ValueError(f"{CONFIG_KEY}: one vision feature layer is supported, this model has {hf_config.vision_feature_layer!r}")
    strategy = hf_config.vision_feature_select_strategy
    if strategy not in ("default", "full"):
        raise ValueError(f"{CONFIG_KEY}: vision_feature_select_strategy {strategy!r} is not supported")
    side = vision.image_size
    # The LLaVA-1.5 processor's geometry: shortest edge to the tower's size, then a square crop.
    layout = SingleViewLayout(Resize((("shortest_edge", side),), True, (side, side)), vision.patch_size, True, strategy == "full")
    return EnginePress.checked(getattr(hf_config, CONFIG_KEY, None), layout, (side, side))


class PressedLlavaInfo(LlavaProcessingInfo):
    """The front end: each image's placeholder run is the press's fed count."""

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        return engine_press(self.get_hf_config()).fed_tokens((image_width, image_height))


class TakesSentEmbeddings:
    """In front of a vLLM model class: ``image_embeds`` a client sent are read as they are, one
    tensor per image of any length (:func:`sent_embeddings`), before vLLM's own parsing."""

    def _parse_and_validate_image_input(self, **kwargs):
        sent = sent_embeddings(kwargs)
        return sent if sent is not None else super()._parse_and_validate_image_input(**kwargs)


class EngineFamily(Family):
    """The library's family adapter over vLLM's modules: the projector and the layout."""

    def __init__(self, model, layout):
        super().__init__(model, None)
        self.layout = layout

    def encode(self, pixel_inputs):
        raise NotImplementedError("the engine encodes with vLLM's tower")

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.multi_modal_projector(features)


def pressed_embeddings(family: Family, encoded: EncodedMedia, press) -> torch.Tensor:
    """One image's embeddings through the library's press path; what was kept is appended to
    ``$PRUNESID_VLLM_RECORD`` when set (the tests compare it with the transformers path)."""
    return pressed_run(family, encoded, press).embeds


def pressed_run(family: Family, encoded: EncodedMedia, press) -> VisualRun:
    """:func:`pressed_embeddings` with each fed token's origin in the unmodified run (what
    M-RoPE families place tokens by)."""
    [compression] = compress(family, [encoded], press)
    run = visual_run(family, encoded, compression)
    record = os.environ.get(RECORD_ENV)
    if record:
        kept = [index.tolist() for index in compression.indices]
        with open(record, "a") as sink:
            sink.write(json.dumps({"method": compression.method, "indices": kept, "fed": int(run.embeds.shape[0])}) + "\n")
    return run


@MULTIMODAL_REGISTRY.register_processor(LlavaMultiModalProcessor, info=PressedLlavaInfo, dummy_inputs=LlavaDummyInputsBuilder)
class PruneSIDLlavaForConditionalGeneration(TakesSentEmbeddings, LlavaForConditionalGeneration):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        checked = engine_press(vllm_config.model_config.hf_config)  # before any weight is built
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if not isinstance(self.vision_tower, CLIPVisionModel):
            raise ValueError(f"{CONFIG_KEY}: the vLLM plug-in supports CLIP towers, got {type(self.vision_tower).__name__}")
        self.engine_press = checked
        self.press_family = EngineFamily(self, checked.layout)

    def _process_image_input(self, image_input):
        if isinstance(image_input, SentEmbeddings):
            return image_input.data
        if isinstance(image_input, LlavaImageEmbeddingInputs):
            return image_input["data"]
        pixels = image_input["pixel_values"]
        # One image at a time: what an image keeps never depends on the batch it came in.
        return [self._pressed_image(view[None]) for view in pixels]

    @torch.no_grad()
    def _pressed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pressed_embeddings(self.press_family, self._encode(pixels), self.engine_press.press)

    def _encode(self, pixels: torch.Tensor) -> EncodedMedia:
        side = self.config.vision_config.image_size
        layout = self.engine_press.layout
        features, cls, importance, keys = encode_tower(self.vision_tower, pixels)
        return EncodedMedia(
            key="", image=Image.new("RGB", (side, side)), features=features, cls=cls, cls_fed=layout.cls_fed,
            importance=importance, grids=layout.grids((side, side)), valid=None, pixel_inputs={}, vision_ms=0.0, keys=keys,
        )


@torch.no_grad()
def encode_tower(tower: CLIPVisionModel, views: torch.Tensor):
    """``views [V, 3, H, W]`` through vLLM's CLIP tower up to the feature layer (vLLM builds no
    layer beyond it): (features ``[V, T, D]``, CLS ``[V, D]``, the feature layer's CLS
    attention ``[V, T]`` and mean keys ``[V, T, d]``, both from the input that layer receives
    and reduced over tensor-parallel ranks)."""
    from vllm.distributed.communication_op import tensor_model_parallel_all_reduce

    model = tower.vision_model
    hidden = model.pre_layrnorm(model.embeddings(views.to(model.dtype)))
    layers = model.encoder.layers
    for layer in layers[:-1]:
        hidden = layer(hidden)
    importance, keys = layer_importance(layers[-1], hidden, tensor_model_parallel_all_reduce)
    selected = layers[-1](hidden)
    return selected[:, 1:], selected[:, 0], importance[:, 1:], keys[:, 1:]
