"""InternVL3 (Hugging Face format) in vLLM with a press: N tokens per view (each 448 px tile
and the thumbnail).

vLLM serves the HF architecture ``InternVLForConditionalGeneration`` with its
``InternS1ForConditionalGeneration`` (InternViT in ``interns1_vit.py``). This is that class with:

- the front end's ``<IMG_CONTEXT>`` run per image sized by the library's InternVL layout under
  the run's press (``fed_tokens``: views x N), the tiling read from the processor as the
  library reads it, and checked against the views the processor actually cut;
- image embeddings made as the library's InternVL family makes them: vLLM's InternViT up to
  the feature layer, the CLS attention row and mean keys of that layer recomputed from its own
  projections (:func:`prunesid.families.internvl.adapter.internvit_cls_attention`), the model's own pixel
  shuffle, each token's importance / key the mean over its 2 x 2 block, then the library's one
  press path per image and the projector on the kept tokens only.

vLLM does not shard InternViT's attention (its q / k / v are plain linear layers on every
rank; only the MLP is tensor-parallel and all-reduced inside the layer), so every rank holds
every head and the importance needs no reduction across ranks.

A clip's frames (resized whole, no tiles) are views too: ``Frame{i}: <img>`` + N ``<video>``
+ ``</img>`` per frame, each frame pressed as one view. Embeddings sent by a client pass
through untouched.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import torch
from PIL import Image
from vllm.model_executor.models.interns1 import (
    InternS1DummyInputsBuilder,
    InternS1ForConditionalGeneration,
    InternS1MultiModalProcessor,
    InternS1ProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.parse import ImageProcessorItems
from vllm.multimodal.processing import PromptReplacement, PromptUpdateDetails, cached_encode

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import EncodedMedia
from prunesid.families.internvl.adapter import InternVLLayout, internvit_cls_attention
from prunesid.families.llava.vllm_model import EngineFamily, SentEmbeddings, TakesSentEmbeddings, pressed_embeddings
from prunesid.vllm.settings import CONFIG_KEY, EnginePress


def engine_press(hf_config, tiling: tuple[int, int] = (1, 1)) -> EnginePress:
    """The run's press and InternVL layout (``tiling``: the processor's min / max tiles),
    checked (ValueError naming the setting)."""
    if getattr(hf_config, "model_type", None) != "internvl":
        raise ValueError(f"{CONFIG_KEY}: the vLLM plug-in supports InternVL (model_type 'internvl'), this model is {getattr(hf_config, 'model_type', None)!r}")
    layer = hf_config.vision_feature_layer
    if not isinstance(layer, int) or layer % (hf_config.vision_config.num_hidden_layers + 1) == 0:
        raise ValueError(f"{CONFIG_KEY}: one vision feature layer after the embeddings is supported, this model has {layer!r}")
    if hf_config.vision_feature_select_strategy != "default":
        raise ValueError(f"{CONFIG_KEY}: InternVL pixel-shuffles the patches without the CLS; strategy 'default' only")
    tile, side = _tile_and_side(hf_config)
    layout = InternVLLayout(tile=tile, side=side, min_patches=tiling[0], max_patches=tiling[1])
    return EnginePress.checked(getattr(hf_config, CONFIG_KEY, None), layout, (tile, tile))


def processor_tiling(processor, mm_kwargs) -> tuple[int, int]:
    """(min, max) tiles as the processor cuts images under ``mm_kwargs``: its own image
    options (``crop_to_patches`` on by default) over the image processor's settings."""
    merged = processor._merge_kwargs(processor.valid_processor_kwargs, tokenizer_init_kwargs=processor.tokenizer.init_kwargs, **dict(mm_kwargs))
    options, image_processor = merged["images_kwargs"], processor.image_processor
    crop = options.get("crop_to_patches", image_processor.crop_to_patches)
    return int(options.get("min_patches", image_processor.min_patches)), int(options.get("max_patches", image_processor.max_patches)) if crop else 1


class PressedInternVLInfo(InternS1ProcessingInfo):
    """The front end: each image's ``<IMG_CONTEXT>`` run (a clip's ``<video>`` runs) is the press's fed count."""

    def get_hf_processor(self, **kwargs):
        from prunesid.family_kit.processors import torchvision_available

        if torchvision_available():
            return super().get_hf_processor(**kwargs)
        # vLLM's CPU build has no torchvision, which InternVL's video processor needs: the
        # processor as the library builds it then (images alike, clips frame by frame).
        return _library_processor(self.ctx.model_config.model)

    def pressed(self, processor, mm_kwargs) -> EnginePress:
        return engine_press(self.get_hf_config(), processor_tiling(processor, self.ctx.get_merged_mm_kwargs(mm_kwargs)))

    def get_num_image_tokens(self, *, image_width: int, image_height: int, processor, mm_kwargs) -> int:
        return self.pressed(processor, mm_kwargs).fed_tokens((image_width, image_height))


@lru_cache(maxsize=4)
def _library_processor(model: str):
    from prunesid.family_kit.processors import load_processor

    return load_processor(model, "internvl")


class PressedInternVLProcessor(InternS1MultiModalProcessor):
    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        processor = self.info.get_hf_processor(**hf_processor_mm_kwargs)
        pressed = self.info.pressed(processor, hf_processor_mm_kwargs)
        tokenizer = self.info.get_tokenizer()
        data = out_mm_kwargs.get_data()
        views, frames = data.get("image_num_patches"), data.get("video_num_patches")

        def image_run(item_idx: int):
            images = mm_items.get_items("image", ImageProcessorItems)
            size = (images.get_image_size(item_idx).width, images.get_image_size(item_idx).height)
            cut = int(views[item_idx])
            if pressed.layout.num_views(size) != cut:
                raise ValueError(f"{CONFIG_KEY}: the layout cuts a {size[0]} x {size[1]} image into {pressed.layout.num_views(size)} views, the processor into {cut}")
            run = processor.start_image_token + processor.image_token * pressed.fed_tokens(size) + processor.end_image_token
            return PromptUpdateDetails.select_token_id(cached_encode(tokenizer, run, add_special_tokens=False), processor.image_token_id)

        def video_run(item_idx: int):
            # Each frame is one view, resized whole (no tiles): the fed count of a one-tile image.
            tile = pressed.layout.tile
            run = processor.start_image_token + processor.video_token * pressed.fed_tokens((tile, tile)) + processor.end_image_token
            text = "\n".join(f"Frame{frame + 1}: {run}" for frame in range(int(frames[item_idx])))
            video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
            return PromptUpdateDetails.select_token_id(cached_encode(tokenizer, text, add_special_tokens=False), video_token_id)

        # Embeddings a client sent keep vLLM's own replacement (their own length).
        pressed_runs = {"image": image_run if views is not None else None, "video": video_run if frames is not None else None}
        return [
            PromptReplacement(modality=update.modality, target=update.target, replacement=pressed_runs[update.modality])
            if pressed_runs.get(update.modality) is not None else update
            for update in updates
        ]


class _InternVLEngineFamily(EngineFamily):
    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.multi_modal_projector(features)


@MULTIMODAL_REGISTRY.register_processor(PressedInternVLProcessor, info=PressedInternVLInfo, dummy_inputs=InternS1DummyInputsBuilder)
class PruneSIDInternVLForConditionalGeneration(TakesSentEmbeddings, InternS1ForConditionalGeneration):
    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        checked = engine_press(vllm_config.model_config.hf_config)  # before any weight is built
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.engine_press = checked
        self.press_family = _InternVLEngineFamily(self, checked.layout)

    def _process_vision_input(self, image_input):
        if isinstance(image_input, SentEmbeddings):
            return image_input.data
        if image_input["type"] not in ("pixel_values", "pixel_values_videos"):
            return super()._process_vision_input(image_input)  # sent embeddings
        # An image's views are its tiles and thumbnail, a clip's its frames.
        pixels, counts = image_input["pixel_values"], [int(n) for n in image_input["num_patches"]]
        # One input at a time: what an input keeps never depends on the batch it came in.
        return tuple(self._pressed_image(views) for views in pixels.split(counts))

    @torch.no_grad()
    def _pressed_image(self, views: torch.Tensor) -> torch.Tensor:
        features, importance, keys = self._encode(views)
        tile, side = self.engine_press.layout.tile, self.engine_press.layout.side
        # A press reads each view's grid shape only (16 x 16 here); where the tiles sit does not matter.
        grids = [PatchGrid(side, side, (0.0, 0.0, float(tile), float(tile)), label=f"view {v}") for v in range(len(views))]
        encoded = EncodedMedia(
            key="", image=Image.new("RGB", (tile, tile)), features=features, cls=None, cls_fed=False,
            importance=importance, grids=grids, valid=None, pixel_inputs={}, vision_ms=0.0, keys=keys,
        )
        return pressed_embeddings(self.press_family, encoded, self.engine_press.press)

    def _encode(self, views: torch.Tensor):
        """``views [V, 3, 448, 448]`` through vLLM's InternViT up to the feature layer:
        (shuffled features ``[V, 256, 4 D]``, importance ``[V, 256]``, keys ``[V, 256, d]``), the
        last two per token the mean over its 2 x 2 block of patches."""
        tower = self.vision_tower
        layer = self.config.vision_feature_layer
        layers = tower.encoder.layer
        index = layer % (len(layers) + 1)  # hidden state `index` is the output of layer index - 1
        hidden, _ = tower.embeddings(views.to(tower.embeddings.patch_embeddings.projection.weight.dtype))
        for block in layers[: index - 1]:
            hidden = block(hidden)
        importance, keys = internvit_cls_attention(_transformers_names(layers[index - 1]), hidden)
        hidden = layers[index - 1](hidden)
        # Layer -1 is the tower's output (after its final norm, an identity with mean pooling), as transformers reads it.
        selected = tower.layernorm(hidden) if layer == -1 else hidden
        return self._shuffled(selected[:, 1:]), self._block_mean(importance[:, 1:, None])[..., 0], self._block_mean(keys[:, 1:])

    def _shuffled(self, patches: torch.Tensor) -> torch.Tensor:
        """``[V, P, D] -> [V, P / 4, 4 D]``: the model's own pixel shuffle, as ``extract_feature``."""
        views, count, width = patches.shape
        side = round(count**0.5)
        shuffled = self.pixel_shuffle(patches.reshape(views, side, side, width), scale_factor=self.downsample_ratio)
        return shuffled.reshape(views, -1, shuffled.shape[-1])

    def _block_mean(self, values: torch.Tensor) -> torch.Tensor:
        """``[V, P, d] -> [V, P / 4, d]``: each token's mean over the patches of its block."""
        shuffled = self._shuffled(values)
        return shuffled.reshape(*shuffled.shape[:2], -1, values.shape[-1]).mean(dim=2)


def _transformers_names(layer) -> SimpleNamespace:
    """vLLM's InternViT layer under the names the library's :func:`internvit_cls_attention`
    reads (transformers' InternVL layer); vLLM has no q / k norms when ``use_qk_norm`` is off."""
    attention = layer.attention
    identity = torch.nn.Identity()
    q_norm, k_norm = (attention.q_norm, attention.k_norm) if attention.qk_normalization else (identity, identity)
    return SimpleNamespace(
        layernorm_before=layer.layernorm_before,
        attention=SimpleNamespace(
            q_proj=attention.q_proj, k_proj=attention.k_proj, q_norm=q_norm, k_norm=k_norm,
            num_heads=attention.num_heads, head_dim=attention.head_dim, scale=attention.scale,
        ),
    )


def _tile_and_side(hf_config) -> tuple[int, int]:
    """(tile side in pixels, tokens per side of a view after the pixel shuffle)."""
    vision = hf_config.vision_config
    size, patch = vision.image_size, vision.patch_size
    size, patch = (size if isinstance(size, (list, tuple)) else (size, size)), (patch if isinstance(patch, (list, tuple)) else (patch, patch))
    if size[0] != size[1] or patch[0] != patch[1]:
        raise ValueError(f"{CONFIG_KEY}: InternVL tiles are square, this model's are {list(size)} with patches {list(patch)}")
    scale = 1 / hf_config.downsample_ratio
    if abs(scale - round(scale)) > 1e-6 or (size[0] // patch[0]) % round(scale):
        raise ValueError(f"{CONFIG_KEY}: downsample_ratio {hf_config.downsample_ratio} does not pixel-shuffle {size[0] // patch[0]} patches per side")
    return int(size[0]), size[0] // patch[0] // round(scale)
