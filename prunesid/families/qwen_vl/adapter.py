"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: selection among each image's merged tokens.

The processor keeps its dynamic resolution: an image is resized to multiples of
patch x merge pixels (28 px for Qwen2/2.5-VL, 32 px for Qwen3-VL) between min_pixels and
max_pixels, so every image has its own number T of merged tokens. The tower (with its patch
merger) runs once per image; its output is already in the LLM's width, so selection runs
there (SPEC section 9, preset "qwen2-vl": N is per 576 merged tokens, each image keeps its
own N_eff) and ``project`` is the identity.

Positions: the LLM places visual tokens with 3-D rotary positions (M-RoPE). The kept tokens
keep the positions they have in the unmodified model: the model's own ``get_rope_index``
runs on the *unpruned* input ids (every placeholder run at its full length), and the
columns of the tokens actually fed are handed to ``generate`` as ``position_ids``. Text
after an image keeps its original positions, and since generation continues from the last
position, decoding uses the rope deltas of the unpruned sequence. The features go in
through transformers' ``mm_encoder_outputs``; Qwen3-VL's deepstack features are cut with
the same kept tokens. Nothing is patched, and any number of images works in one call.

Video: a clip's frames (``num_frames``, 16 sampled uniformly; with ``fps`` (``load_vlm(...,
fps=2.0)``) as many as the clip's length gives at that rate, as the Qwen processors sample:
:class:`prunesid.video.FrameRate`) are processed as the model's
video processor does (:class:`prunesid.family_kit.processors.QwenVideoProcessor` without
torchvision): pairs of frames (``temporal_patch_size`` 2) form t temporal groups of
rows x cols merged tokens, and each group is a view a press compresses on its own (N_eff per
group; PruneSID-Dyn shares groups x N across them). Positions come from ``get_rope_index``
on the unpruned ids with ``video_grid_thw`` (and ``second_per_grid_ts`` on Qwen2.5-VL, read
from the clip's frame rate and sampled frames); Qwen3-VL's prompt holds one placeholder run
per group after its timestamp (``<1.2 seconds>``), as its processor writes it.
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from prunesid.geometry import PatchGrid
from prunesid.video import FrameRate
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, VisualRun, register_family
from prunesid.families.llava.adapter import views_in_sequence
from prunesid.family_kit.processors import QwenVideoProcessor, stand_in_video_processor

# Frames a clip is sampled to (uniformly, first and last included): 8 temporal groups.
QWEN_FRAMES = 16
# The frame rate transformers' Qwen processors assume for frames without one.
DEFAULT_FPS = 24.0
# Model types whose processor is Qwen3-VL's: one placeholder run per temporal group.
TIMESTAMPED_GROUPS = ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")


class QwenVL(Family):
    """The Qwen-VL family: one view per image, the merged-token grid over the whole image."""

    pixel_input_keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids")

    modality = "image"
    num_frames = QWEN_FRAMES

    def __init__(self, model, processor, min_pixels: int | None = None, max_pixels: int | None = None, fps: float | None = None):
        super().__init__(model, processor)
        if fps is not None:  # frames at fps a second of the clip, in pairs, 4 to 32 of them
            self.num_frames = FrameRate(fps=fps, multiple=getattr(model.config.vision_config, "temporal_patch_size", 2))
        vision = model.config.vision_config
        self.merge_size = vision.spatial_merge_size
        self.patch_size = vision.patch_size
        self.temporal_patch_size = getattr(vision, "temporal_patch_size", 2)
        self.token_pixels = self.patch_size * self.merge_size  # side of one merged token, in processor pixels
        self.video_token_id = getattr(model.config, "video_token_id", None)
        self.model_type = model.config.model_type
        # Qwen3-VL's processor (also Qwen3-VL-MoE's and Qwen3.5's) writes each temporal
        # group's timestamp before its own placeholder run.
        self.timestamps = self.model_type in TIMESTAMPED_GROUPS
        self.size = _pixel_limits(processor.image_processor, min_pixels, max_pixels, self.token_pixels)
        self.video_processor = getattr(processor, "video_processor", None) or QwenVideoProcessor(
            processor.image_processor, "whole-clip" if self.timestamps else "per-frame"
        )
        video_size = self.video_processor.size
        self.layout = QwenLayout(
            self.token_pixels, self.size["shortest_edge"], self.size["longest_edge"],
            video_pixels=(int(video_size["shortest_edge"]), int(video_size["longest_edge"])),
            whole_clip=self.timestamps, temporal_patch_size=self.temporal_patch_size, frames=_layout_frames(self.num_frames),
        )

    def placeholder_for(self, modality: str) -> int:
        if modality == "video" and self.video_token_id is not None:
            return self.video_token_id
        return super().placeholder_for(modality)

    def preprocess(self, image: Image.Image) -> dict:
        inputs = self.processor.image_processor(images=image, size=dict(self.size), return_tensors="pt")
        return dict(inputs)

    def preprocess_video(self, frames: list[Image.Image]) -> dict:
        """``pixel_values_videos`` and ``video_grid_thw`` of one clip's sampled frames, from the
        model's video processor (or its torchvision-free stand-in), frames taken as given."""
        options = {} if isinstance(self.video_processor, QwenVideoProcessor) else {"do_sample_frames": False}
        out = self.video_processor(videos=[list(frames)], return_tensors="pt", **options)
        return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        visual = self.model.model.visual
        if "pixel_values_videos" in pixel_inputs:
            pixels = pixel_inputs["pixel_values_videos"].to(visual.device, visual.dtype)
            grid = pixel_inputs["video_grid_thw"].to(visual.device)
            output = self.model.model.get_video_features(pixels, grid, return_dict=True)
        else:
            pixels = pixel_inputs["pixel_values"].to(visual.device, visual.dtype)
            grid = pixel_inputs["image_grid_thw"].to(visual.device)
            output = self.model.model.get_image_features(pixels, grid, return_dict=True)
        groups = int(grid[0, 0])  # an image: 1; a clip: its temporal groups, each a view
        width = output.pooler_output[0].shape[-1]
        features = output.pooler_output[0].reshape(groups, -1, width)  # [V, T, H]: merged tokens, row-major per group
        deepstack = getattr(output, "deepstack_features", None)
        return VisionOutput(
            features=features, cls=None, importance=None, cls_fed=False,
            # per deepstack layer: this input's [V, T, H]
            deepstack=[layer[0].reshape(groups, -1, layer[0].shape[-1]) for layer in deepstack] if deepstack else None,
        )

    def grids(self, image: Image.Image, pixel_inputs: dict | None = None, modality: str = "image") -> list[PatchGrid]:
        """A clip's groups from its own ``video_grid_thw`` (the frame count sets Qwen3-VL's resize)."""
        grid = (pixel_inputs or {}).get("video_grid_thw") if modality == "video" else None
        if grid is None:
            return self.layout.grids(image.size, modality)
        groups, rows, cols = (int(v) for v in grid[0])
        return self.layout.video_grids(image.size, groups, rows // self.merge_size, cols // self.merge_size)

    def placeholder_runs(self, encoded, run: VisualRun) -> tuple[list[int], list[int]]:
        views, per_view = encoded.features.shape[:2]
        if encoded.modality != "video" or not self.timestamps:
            return [views * per_view], [int(run.embeds.shape[0])]
        groups = _token_views(run.origin, per_view)  # Qwen3-VL: one run per temporal group
        return [per_view] * views, torch.bincount(groups, minlength=views).tolist()

    def expand_prompt(self, prompt_ids: torch.Tensor, media: list) -> torch.Tensor:
        """Qwen3-VL: each clip's one placeholder (a chat template's) becomes, per temporal group,
        ``<t seconds><|vision_start|><|video_pad|><|vision_end|>``, as its processor writes it."""
        videos = [item for item in media if item.modality == "video"]
        ids = prompt_ids[0]
        if not self.timestamps or not videos or int((ids == self.video_token_id).sum()) != len(videos):
            return prompt_ids
        tokenizer = self.processor.tokenizer
        start, end = (tokenizer.convert_tokens_to_ids(token) for token in ("<|vision_start|>", "<|vision_end|>"))
        pieces, last = [], 0
        for position, item in zip((ids == self.video_token_id).nonzero().flatten().tolist(), videos):
            pieces.append(ids[last:position])
            expansion = []
            for stamp in self.group_timestamps(item):
                expansion += tokenizer(f"<{stamp:.1f} seconds>", add_special_tokens=False)["input_ids"]
                expansion += [start, self.video_token_id, end]
            pieces.append(torch.tensor(expansion, dtype=ids.dtype, device=ids.device))
            last = position + 1
        pieces.append(ids[last:])
        return torch.cat(pieces)[None]

    def group_timestamps(self, encoded) -> list[float]:
        """Seconds of each temporal group (the mean of its first and last frame), by
        transformers' Qwen3-VL rule, from the clip's frame numbers and frame rate."""
        from transformers import Qwen3VLProcessor

        metadata = video_metadata(encoded.video, encoded.num_views * self.temporal_patch_size)
        stamps = Qwen3VLProcessor._calculate_timestamps(self.processor, list(metadata.frames_indices), metadata.fps or DEFAULT_FPS, self.temporal_patch_size)
        return stamps[: encoded.num_views]

    def seconds_per_group(self, encoded) -> float:
        """Qwen2.5-VL's ``second_per_grid_ts`` of a clip: temporal patch / sampled frame rate."""
        given = encoded.pixel_inputs.get("second_per_grid_ts")
        if given is not None:
            return float(torch.as_tensor(given).flatten()[0])
        metadata = video_metadata(encoded.video, encoded.num_views * self.temporal_patch_size)
        return self.temporal_patch_size / metadata.sampled_fps

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features  # the merger's output is already in the LLM's width

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """The processor's flattened patches cut per image by ``image_grid_thw`` (then per clip
        by ``video_grid_thw``); each input's size is its resized one (the layout maps it to the
        same merged-token grid)."""
        items = []
        for modality, pixel_key, grid_key in (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw")):
            grid = inputs.get(grid_key)
            if grid is None or inputs.get(pixel_key) is None:
                continue
            seconds = inputs.get("second_per_grid_ts")
            for row, chunk in enumerate(torch.split(inputs[pixel_key], grid.prod(dim=-1).tolist())):
                _, height, width = (int(v) for v in grid[row])
                item = {pixel_key: chunk, grid_key: grid[row:row + 1]}
                if modality == "video" and seconds is not None:
                    item["second_per_grid_ts"] = torch.as_tensor(seconds).flatten()[row:row + 1]
                items.append((modality, item, (width * self.patch_size, height * self.patch_size)))
        return items

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        if not runs:
            return {}
        if input_ids.shape[0] != 1:
            raise ValueError(f"expected the input ids of one conversation, got a batch of {input_ids.shape[0]}")
        positions = self.positions(input_ids, runs, encoded)
        outputs = {}
        for modality in ("image", "video"):
            mine = [i for i, item in enumerate(encoded) if item.modality == modality]
            if mine:
                outputs[modality] = self._encoder_outputs([runs[i] for i in mine], [encoded[i] for i in mine])
        return {"mm_encoder_outputs": outputs, "position_ids": positions}

    # --- positions ---------------------------------------------------------------------

    def unpruned_indices(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The unmodified conversation's input ids ``[1, L_full]`` (every placeholder run at its
        full length) and, for each of the ``L`` tokens fed, its index in them (a new token,
        origin -1, takes the last token of its run)."""
        ids = input_ids[0].cpu()
        # Per modality, in input order: each placeholder run's full length and the origins
        # (within that run) of the tokens fed in it.
        pieces: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for run, item in zip(runs, encoded):
            if int(run.embeds.shape[0]) == 0:
                raise ValueError(f"a {item.modality} has no visual token left; every input needs at least one")
            placeholder = self.placeholder_for(item.modality)
            views, per_view = item.features.shape[:2]
            origin = run.origin.cpu().long()
            if int(origin.max()) >= views * per_view:
                raise ValueError(f"a visual token's origin {int(origin.max())} is outside its input's {views * per_view} tokens")
            full, fed = self.placeholder_runs(item, run)
            if len(full) == 1:
                pieces.setdefault(placeholder, []).append((full[0], origin))
                continue
            groups = _token_views(origin, per_view)
            if 0 in fed:
                raise ValueError(f"temporal group {fed.index(0) + 1} of a clip has no visual token left; every group needs at least one")
            for group in range(views):
                pieces.setdefault(placeholder, []).append((per_view, torch.where(origin[groups == group] >= 0, origin[groups == group] - group * per_view, -1)))
        found = [(start, stop, int(ids[start])) for start, stop in _runs(torch.isin(ids, torch.tensor(list(pieces) or [-1])), ids)]
        for placeholder, expected in pieces.items():
            count = sum(1 for *_, token in found if token == placeholder)
            if count != len(expected):
                raise ValueError(f"the input ids hold {count} placeholder runs of token {placeholder} but the inputs need {len(expected)}")
        queues = {placeholder: iter(expected) for placeholder, expected in pieces.items()}
        index = torch.empty(ids.numel(), dtype=torch.long)
        full_ids, cursor, position = [], 0, 0
        for start, stop, placeholder in found:
            full, origin = next(queues[placeholder])
            if origin.numel() != stop - start:
                raise ValueError(f"a placeholder run holds {stop - start} tokens but {origin.numel()} are fed there")
            index[position:start] = cursor + torch.arange(start - position)
            full_ids.append(ids[position:start])
            cursor += start - position
            index[start:stop] = cursor + torch.where(origin >= 0, origin, full - 1)
            full_ids.append(torch.full((full,), placeholder, dtype=ids.dtype))
            cursor += full
            position = stop
        index[position:] = cursor + torch.arange(ids.numel() - position)
        full_ids.append(ids[position:])
        return torch.cat(full_ids)[None], index

    def positions(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> torch.Tensor:
        """``[4, 1, L]`` position ids for the ``L`` tokens fed: a plain text row (what
        ``generate`` puts first) and the M-RoPE rows of the unmodified sequence at the
        tokens fed, from the model's own ``get_rope_index`` on the unpruned ids."""
        full_ids, index = self.unpruned_indices(input_ids, runs, encoded)
        rope, _ = self.rope_index(full_ids, encoded)
        rope = rope[:, :, index.to(rope.device)]
        text = torch.arange(input_ids.shape[1], device=rope.device).view(1, 1, -1)
        return torch.cat([text, rope]).to(input_ids.device)

    def rope_index(self, full_ids: torch.Tensor, encoded: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's M-RoPE positions ``[3, 1, L_full]`` and rope deltas of unpruned ids."""
        images = [item.pixel_inputs["image_grid_thw"] for item in encoded if item.modality == "image"]
        videos = [item for item in encoded if item.modality == "video"]
        token_types = (full_ids == self.placeholder_token_id).int()
        options = {"image_grid_thw": torch.cat(images) if images else None}
        if videos:
            token_types = token_types + 2 * (full_ids == self.video_token_id).int()
            options["video_grid_thw"] = torch.cat([item.pixel_inputs["video_grid_thw"] for item in videos])
            if self.model_type == "qwen2_5_vl":
                options["second_per_grid_ts"] = torch.tensor([self.seconds_per_group(item) for item in videos])
        return self.model.model.get_rope_index(full_ids, mm_token_type_ids=token_types, **options)

    # --- features ----------------------------------------------------------------------

    def _encoder_outputs(self, runs: list[VisualRun], encoded: list):
        features = [run.embeds for run in runs]
        if not all(item.deepstack for item in encoded):
            return BaseModelOutputWithPooling(pooler_output=features)
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        layers = len(encoded[0].deepstack)
        deepstack = [[_cut(item.deepstack[layer].flatten(0, 1), run.origin) for run, item in zip(runs, encoded)] for layer in range(layers)]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=features, deepstack_features=deepstack)


class QwenLayout(FamilyLayout):
    """Qwen-VL's geometry from its processor's numbers: the image resized to multiples of one
    merged token's side within the pixel limits, one view, tokens fed in output order."""

    preset = "qwen2-vl"
    cls_slot = False

    def __init__(
        self, token_pixels: int, min_pixels: int, max_pixels: int, video_pixels: tuple[int, int] | None = None,
        whole_clip: bool = False, temporal_patch_size: int = 2, frames: int = QWEN_FRAMES,
    ):
        self.token_pixels = token_pixels
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        # A clip: every frame resized alike within the video processor's limits, per frame
        # (Qwen2/2.5-VL) or for the whole clip (Qwen3-VL); pairs of frames are one group.
        self.video_pixels = video_pixels or (min_pixels, max_pixels)
        self.whole_clip = whole_clip
        self.temporal_patch_size = temporal_patch_size
        self.frames = frames

    def grid_shape(self, image_size, modality="image", frames: int | None = None) -> tuple[int, int]:
        """(rows, cols) of merged tokens for an image (or each group of a clip of ``frames``
        frames) of ``image_size``."""
        width, height = image_size
        if modality == "video":
            low, high = self.video_pixels
            if self.whole_clip:
                from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as clip_resize

                count = max(frames or self.frames, self.temporal_patch_size)
                resized_h, resized_w = clip_resize(count, height, width, self.temporal_patch_size, self.token_pixels, low, high)
            else:
                resized_h, resized_w = smart_resize(height, width, factor=self.token_pixels, min_pixels=low, max_pixels=high)
        else:
            resized_h, resized_w = smart_resize(height, width, factor=self.token_pixels, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return resized_h // self.token_pixels, resized_w // self.token_pixels

    def groups(self, frames: int | None = None) -> int:
        """Temporal groups of a clip of ``frames`` frames (an odd count padded by one)."""
        return -(-(frames or self.frames) // self.temporal_patch_size)

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        rows, cols = self.grid_shape(image_size, modality)
        return [rows * cols] * (self.groups() if modality == "video" else 1)

    def unmodified_tokens(self, image_size, modality="image") -> int:
        return sum(self.selectable_tokens(image_size, modality))

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        # The processor resizes the whole image (no crop, no padding) to rows x cols merged tokens.
        rows, cols = self.grid_shape(image_size, modality)
        if modality == "video":
            return self.video_grids(image_size, self.groups(), rows, cols)
        return [PatchGrid(rows, cols, (0.0, 0.0, float(image_size[0]), float(image_size[1])), label="image")]

    def video_grids(self, image_size, groups: int, rows: int, cols: int) -> list[PatchGrid]:
        box = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        step = self.temporal_patch_size
        return [PatchGrid(rows, cols, box, label=f"frames {g * step + 1}-{g * step + step}") for g in range(groups)]

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        # Group after group (a clip), each its kept tokens in output order, then any merged
        # tokens (new: origin -1); group g starts at g x (rows x cols) in the unmodified run.
        if modality != "video":
            return views_in_sequence(kept, merged, False, False, stride=None)
        rows, cols = self.grid_shape(image_size, modality, frames=len(kept) * self.temporal_patch_size)
        return views_in_sequence(kept, merged, False, False, stride=rows * cols)


def _cut(features: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` at ``origin``; a new token (origin -1) gets zeros (nothing added)."""
    origin = origin.to(features.device)
    rows = features[origin.clamp(min=0)]
    return torch.where((origin >= 0)[:, None], rows, torch.zeros_like(rows))


def _runs(mask: torch.Tensor, ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, stop) of every run of one token id where ``mask`` is True, in order."""
    bounds = mask.clone()
    bounds[1:] &= ~(mask[:-1] & (ids[1:] == ids[:-1]))
    starts = bounds.nonzero().flatten().tolist()
    stops = []
    for start in starts:
        stop = start + 1
        while stop < ids.numel() and mask[stop] and ids[stop] == ids[start]:
            stop += 1
        stops.append(stop)
    return list(zip(starts, stops))


def _token_views(origin: torch.Tensor, per_view: int) -> torch.Tensor:
    """The view (temporal group) of each fed token from its origin; a new token (origin -1)
    belongs to the view of the token before it."""
    views = torch.where(origin >= 0, origin // per_view, -1)
    for i in range(1, views.numel()):
        if views[i] < 0:
            views[i] = views[i - 1]
    return views.clamp(min=0)


def _layout_frames(sampling) -> int:
    """The frame count the layout sizes clips by before reading one: the fixed count, or at
    fps the most a clip can get (its own count is known once its length is read)."""
    return sampling.max_frames if isinstance(sampling, FrameRate) else sampling


def video_metadata(video, frames: int):
    """transformers' VideoMetadata of a sampled clip (frame numbers, frame rate): what its
    Qwen processors read timestamps and ``second_per_grid_ts`` from; frames given without a
    clip are numbered 0, 1, ... at an unknown rate."""
    from transformers.video_utils import VideoMetadata

    if video is None:
        return VideoMetadata(total_num_frames=frames, fps=None, frames_indices=list(range(frames)))
    return VideoMetadata(total_num_frames=video.total_frames, fps=video.fps, frames_indices=list(video.indices))


def _pixel_limits(image_processor, min_pixels, max_pixels, token_pixels: int) -> dict:
    """The processor's size dict with min_pixels / max_pixels applied (validated)."""
    size = {
        "shortest_edge": _size_entry(image_processor, "shortest_edge", "min_pixels", 56 * 56),
        "longest_edge": _size_entry(image_processor, "longest_edge", "max_pixels", 28 * 28 * 1280),
    }
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer number of pixels, got {value!r}")
        size["shortest_edge" if name == "min_pixels" else "longest_edge"] = value
    if size["longest_edge"] < token_pixels * token_pixels:
        raise ValueError(
            f"max_pixels must be at least {token_pixels * token_pixels} (one {token_pixels} x {token_pixels} merged token), "
            f"got {size['longest_edge']}"
        )
    if size["shortest_edge"] > size["longest_edge"]:
        raise ValueError(f"min_pixels ({size['shortest_edge']}) must not exceed max_pixels ({size['longest_edge']})")
    return size


def _size_entry(image_processor, key: str, legacy: str, default: int) -> int:
    """A pixel limit of the processor, wherever its configuration keeps it."""
    size = getattr(image_processor, "size", None) or {}
    for source, name in ((size, key), (size, legacy), (image_processor, legacy)):
        value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
        if value:
            return int(value)
    return default


register_family("qwen2_vl", "Qwen2VLForConditionalGeneration", "dynamic resolution, merged tokens: Qwen2-VL")(QwenVL)
register_family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "dynamic resolution, window attention: Qwen2.5-VL")(QwenVL)
register_family("qwen3_vl", "Qwen3VLForConditionalGeneration", "dynamic resolution, deepstack: Qwen3-VL")(QwenVL)
# The same tower, processor and get_rope_index as Qwen3-VL; only the LLM differs (its
# layers take the features, positions and deepstack rows handed over just the same).
register_family("qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", "deepstack, mixture-of-experts LLM: Qwen3-VL-MoE")(QwenVL)
register_family("qwen3_5", "Qwen3_5ForConditionalGeneration", "no deepstack, hybrid linear / full-attention LLM: Qwen3.5")(QwenVL)
register_family("qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration", "hybrid linear-attention mixture-of-experts LLM: Qwen3.5-MoE")(QwenVL)

# transformers' Qwen2-VL / Qwen3-VL video processors need torchvision; the resize rule of each
for _processor_class, _rule in (("Qwen2VLProcessor", "per-frame"), ("Qwen2_5_VLProcessor", "per-frame"), ("Qwen3VLProcessor", "whole-clip")):
    stand_in_video_processor(_processor_class, lambda model, images, rule=_rule: QwenVideoProcessor.from_checkpoint(model, images, rule))
