"""What the plug-in's Qwen-VL classes share: sizing, the press on the merged tokens, positions.

vLLM's Qwen-VL classes take part in its multimodal-pruning interface
(``SupportsMultiModalPruning``): with ``video_pruning_rate > 0`` (the run's switch) the model
runner hands each request's visual embeddings to ``recompute_mrope_positions`` after encoding,
together with the prompt's positions, and feeds the positions it returns. The plug-in's
classes own both ends of it, so vLLM's own video pruning (EVS) never runs under them:

- the front end sizes each image's placeholder run, and each clip's, from the layout's fed
  count under the press (:class:`prunesid.families.qwen_vl.adapter.QwenLayout`: N_eff per image, per
  temporal group of a clip), read from the grid the processor actually made;
- ``embed_multimodal`` runs vLLM's tower on one input at a time, the library's one press path
  on its merged tokens (:func:`prunesid.families.llava.vllm_model.pressed_run`), and appends to every kept
  token its unpruned (t, h, w) position (:mod:`prunesid.families.qwen_vl.vllm_models.positions`);
- ``recompute_mrope_positions`` strips those channels and places the tokens there, the text
  after an input continuing from the unpruned input's extent: the positions of the
  transformers path (``get_rope_index`` on the unpruned ids, sliced at the tokens fed).

The value of ``video_pruning_rate`` is only the switch. Without it vLLM would feed the
positions of full grids to pruned runs, so a class started without it stops at start.
"""

from __future__ import annotations

from functools import lru_cache, partial

import torch
from PIL import Image

from prunesid.family_kit.base import EncodedMedia
from prunesid.families.qwen_vl.adapter import QWEN_FRAMES, TIMESTAMPED_GROUPS, QwenLayout, _cut
from prunesid.families.llava.vllm_model import EngineFamily, pressed_run
from prunesid.families.qwen_vl.vllm_models.positions import group_channels, kept_channels, place, provisional_positions, runs_of, split_channels
from prunesid.vllm.settings import CONFIG_KEY, DOCS, EnginePress

UNBOUNDED = 1 << 40  # pixel limit of the engine's layout: the processor has already resized


def engine_layout(hf_config, frames: int = QWEN_FRAMES) -> QwenLayout:
    """The family's layout over grids the processor has already made: an input's size is its
    resized one (columns x rows of merged tokens, in pixels), which the layout keeps as it is."""
    vision = hf_config.vision_config
    token_pixels = vision.patch_size * vision.spatial_merge_size
    return QwenLayout(
        token_pixels, token_pixels * token_pixels, UNBOUNDED, video_pixels=(token_pixels * token_pixels, UNBOUNDED),
        whole_clip=hf_config.model_type in TIMESTAMPED_GROUPS, temporal_patch_size=getattr(vision, "temporal_patch_size", 2),
        frames=frames,
    )


def engine_press(hf_config) -> EnginePress:
    """The run's press and Qwen-VL layout, checked (ValueError naming the setting)."""
    layout = engine_layout(hf_config)
    side = layout.token_pixels * 24  # 576 merged tokens: where N_eff = N
    return EnginePress.checked(getattr(hf_config, CONFIG_KEY, None), layout, (side, side))


def require_pruning_switch(vllm_config) -> None:
    """The run must switch vLLM's multimodal-pruning path on, and must not reuse cached prefixes."""
    mm_config = vllm_config.model_config.multimodal_config
    if mm_config is None or not mm_config.is_multimodal_pruning_enabled():
        raise ValueError(
            f"{CONFIG_KEY}: the Qwen-VL classes need vLLM's multimodal-pruning path, which places each kept visual "
            "token at its unpruned M-RoPE position; vLLM runs it only when video_pruning_rate > 0. Start the engine "
            "with --video-pruning-rate 0.5 (LLM(..., video_pruning_rate=0.5)): any value > 0 is only the switch, "
            f"the press decides what is kept and vLLM's own video pruning does not run ({DOCS})"
        )
    if vllm_config.cache_config.enable_prefix_caching:
        raise ValueError(
            f"{CONFIG_KEY}: the Qwen-VL classes need --no-enable-prefix-caching (LLM(..., enable_prefix_caching=False)): "
            "vLLM revises a request's positions only for the visual inputs it encodes in that request, so text after "
            f"an image taken from the prefix cache would get the positions of a pruned sequence ({DOCS})"
        )


def grid_of(thw, merge_size: int) -> tuple[int, int, int]:
    """(groups, rows, cols) of merged tokens from a processor's ``*_grid_thw`` row."""
    groups, height, width = (int(v) for v in thw)
    return groups, height // merge_size, width // merge_size


def fed_count(pressed: EnginePress, grid: tuple[int, int, int], modality: str) -> int:
    """Visual tokens the press feeds for one input of ``grid`` (groups, rows, cols)."""
    groups, rows, cols = grid
    layout = pressed.layout
    clip = engine_layout_like(layout, groups * layout.temporal_patch_size) if modality == "video" else layout
    return clip.fed_tokens((cols * layout.token_pixels, rows * layout.token_pixels), pressed.press, modality)


def engine_layout_like(layout: QwenLayout, frames: int) -> QwenLayout:
    """``layout`` for a clip of ``frames`` frames (its group count; vLLM takes clips of any length)."""
    return QwenLayout(
        layout.token_pixels, layout.min_pixels, layout.max_pixels, layout.video_pixels, layout.whole_clip,
        layout.temporal_patch_size, frames,
    )


class LibraryProcessorInfo:
    """In front of vLLM's Qwen-VL processing info: without torchvision (vLLM's CPU build), the
    Hugging Face processor as the library builds it (images through transformers' PIL image
    processor, clips through :class:`prunesid.family_kit.processors.QwenVideoProcessor`)."""

    def get_hf_processor(self, **kwargs):
        from prunesid.family_kit.processors import torchvision_available

        if torchvision_available():
            return super().get_hf_processor(**kwargs)
        return _library_processor(self.ctx.model_config.model, self.get_hf_config().model_type)


@lru_cache(maxsize=4)
def _library_processor(model: str, model_type: str):
    from prunesid.family_kit.processors import load_processor

    return load_processor(model, model_type)


class PressedQwenProcessor:
    """In front of vLLM's Qwen-VL multimodal processor: each image's and clip's placeholder
    run is the press's fed count for the grid the processor made."""

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        from vllm.multimodal.processing import PromptReplacement

        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        pressed = engine_press(self.info.get_hf_config())
        merge = self.info.get_hf_config().vision_config.spatial_merge_size

        def run(item_idx: int, modality: str, token: int):
            item = out_mm_kwargs[modality][item_idx]
            if f"{modality}_embeds" in item:
                raise ValueError(
                    f"{CONFIG_KEY}: the Qwen-VL classes compress inside the engine and take no sent {modality} "
                    f"embeddings: vLLM would place them by their full grid ({DOCS})"
                )
            return [token] * fed_count(pressed, grid_of(item[f"{modality}_grid_thw"].data, merge), modality)

        return [
            PromptReplacement(modality=update.modality, target=update.target, replacement=partial(run, modality=update.modality, token=update.target[0]))
            for update in updates
        ]


class _QwenEngineFamily(EngineFamily):
    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features  # the merger's output is already in the LLM's width


class PressedQwen:
    """In front of a vLLM Qwen-VL model class: the press in ``embed_multimodal`` and the
    placement of the kept tokens in ``recompute_mrope_positions``."""

    # The class attributes vLLM inspects (supports_multimodal_pruning, and
    # supports_mm_device_do_normalize = False: the processor normalises pixels, as in the
    # library) are set on each registered class in its own module: vLLM caches what it
    # inspects by the hash of that module's file alone.
    prunesid_positions = True  # prunesid.vllm.cpu_runner: the CPU runner switches the path on for this class
    # Does the time axis scale by tokens_per_second x second_per_grid_ts (Qwen2.5-VL)?
    scaled_time = False

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        hf_config = vllm_config.model_config.hf_config
        checked = engine_press(hf_config)  # before any weight is built
        require_pruning_switch(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.engine_press = checked
        self.press_family = _QwenEngineFamily(self, checked.layout)
        self.media_ids = (hf_config.image_token_id, hf_config.video_token_id)

    # --- the front end's positions, then the runner's revision ------------------------

    def get_mrope_input_positions(self, input_tokens, mm_features):
        return provisional_positions(input_tokens, self.media_ids)

    def recompute_mrope_positions(self, input_ids, multimodal_embeddings, mrope_positions, num_computed_tokens):
        parts = [split_channels(embeds) for embeds in multimodal_embeddings]
        positions, delta = place(
            input_ids, runs_of([(relative, extent, index) for _, relative, extent, index in parts]), mrope_positions,
            num_computed_tokens, self.media_ids,
        )
        return [embeds for embeds, *_ in parts], positions, delta

    # --- the press ----------------------------------------------------------------------

    def embed_multimodal(self, **kwargs):
        inputs = self._parse_and_validate_multimodal_inputs(**kwargs)
        embeddings = []
        for key, item in inputs.items():
            if item is None:
                continue
            modality = "video" if key.startswith("video") else "image"  # Qwen2-VL names them "images" / "videos"
            if item["type"].endswith("embeds"):
                raise ValueError(f"{CONFIG_KEY}: the Qwen-VL classes take no sent {modality} embeddings")
            embeddings += self._pressed_inputs(item, modality)
        return tuple(embeddings)

    @torch.no_grad()
    def _pressed_inputs(self, item, modality: str) -> list[torch.Tensor]:
        pixels = item["pixel_values" if modality == "image" else "pixel_values_videos"]
        grids = item[f"{modality}_grid_thw"]
        seconds = item.get("second_per_grid_ts") if modality == "video" else None
        pressed = []
        # One input at a time: what an input keeps never depends on the batch it came in.
        for index, (chunk, thw) in enumerate(zip(pixels.split(grids.prod(-1).tolist()), grids.tolist())):
            interval = 1.0
            if modality == "video" and self.scaled_time:
                per_group = float(seconds[index]) if seconds is not None else 1.0
                interval = self.config.vision_config.tokens_per_second * per_group
            pressed.append(self._pressed(self._tower(chunk, thw), thw, modality, interval))
        return pressed

    def _tower(self, pixels: torch.Tensor, thw: list[int]):
        """One input's merged tokens ``[n, H]`` (and deepstack rows where the family has them)."""
        return self.visual(pixels, grid_thw=[thw]), None

    def _pressed(self, tower, thw, modality: str, interval: float) -> torch.Tensor:
        features, deepstack = tower
        groups, rows, cols = grid_of(thw, self.config.vision_config.spatial_merge_size)
        layout = self.engine_press.layout
        size = (cols * layout.token_pixels, rows * layout.token_pixels)
        grids = layout.video_grids(size, groups, rows, cols) if modality == "video" else layout.grids(size)
        encoded = EncodedMedia(
            key="", image=Image.new("1", size), features=features.reshape(groups, rows * cols, -1), cls=None, cls_fed=False,
            importance=None, grids=grids, valid=None, pixel_inputs={}, vision_ms=0.0, modality=modality,
        )
        run = pressed_run(self.press_family, encoded, self.engine_press.press)
        embeds = run.embeds
        if deepstack is not None:  # Qwen3-VL: every deepstack level's rows cut with the same tokens
            embeds = torch.cat([embeds, _cut(deepstack, run.origin)], dim=1)
        if modality == "video" and layout.whole_clip:  # one placeholder run per temporal group
            channels = group_channels(run.origin, (groups, rows, cols), embeds.dtype, embeds.device)
        else:
            channels = kept_channels(run.origin, (groups, rows, cols), interval, embeds.dtype, embeds.device)
        return torch.cat([embeds, channels], dim=1)
