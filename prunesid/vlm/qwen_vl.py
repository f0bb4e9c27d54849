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

Video is not supported: a conversation holding a video fails with a message (ask about
frames as images instead).
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from prunesid.geometry import PatchGrid
from prunesid.vlm.family import Family, FamilyLayout, FeedPlan, VisionOutput, VisualRun, register_family
from prunesid.vlm.llava import views_in_sequence


class QwenVL(Family):
    """The Qwen-VL family: one view per image, the merged-token grid over the whole image."""

    modality = "image"

    def __init__(self, model, processor, min_pixels: int | None = None, max_pixels: int | None = None):
        super().__init__(model, processor)
        vision = model.config.vision_config
        self.merge_size = vision.spatial_merge_size
        self.patch_size = vision.patch_size
        self.token_pixels = self.patch_size * self.merge_size  # side of one merged token, in processor pixels
        self.video_token_id = getattr(model.config, "video_token_id", None)
        self.size = _pixel_limits(processor.image_processor, min_pixels, max_pixels, self.token_pixels)
        self.layout = QwenLayout(self.token_pixels, self.size["shortest_edge"], self.size["longest_edge"])

    def preprocess(self, image: Image.Image) -> dict:
        inputs = self.processor.image_processor(images=image, size=dict(self.size), return_tensors="pt")
        return dict(inputs)

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        visual = self.model.model.visual
        pixels = pixel_inputs["pixel_values"].to(visual.device, visual.dtype)
        grid = pixel_inputs["image_grid_thw"].to(visual.device)
        output = self.model.model.get_image_features(pixels, grid, return_dict=True)
        features = output.pooler_output[0]  # [T, H]: merged tokens in the LLM's width, row-major
        deepstack = getattr(output, "deepstack_features", None)
        return VisionOutput(
            features=features[None], cls=None, importance=None, cls_fed=False,
            deepstack=[layer[0][None] for layer in deepstack] if deepstack else None,  # per layer: this image's [1, T, H]
        )

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features  # the merger's output is already in the LLM's width

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """The processor's flattened patches cut per image by ``image_grid_thw``; each image's
        size is its resized one (the layout maps it to the same merged-token grid)."""
        grid = inputs.get("image_grid_thw")
        if inputs.get("pixel_values_videos") is not None:
            raise ValueError("video input is not supported for Qwen-VL models here: give the frames as images")
        if grid is None:
            return []
        chunks = torch.split(inputs["pixel_values"], grid.prod(dim=-1).tolist())
        items = []
        for row, chunk in enumerate(chunks):
            _, height, width = (int(v) for v in grid[row])
            size = (width * self.patch_size, height * self.patch_size)
            items.append(("image", {"pixel_values": chunk, "image_grid_thw": grid[row:row + 1]}, size))
        return items

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        if self.video_token_id is not None and bool((input_ids == self.video_token_id).any()):
            raise ValueError(
                "video input is not supported for Qwen-VL models here: give the frames as images "
                "(each is compressed on its own) instead of a video part in the messages"
            )
        if not runs:
            return {}
        if input_ids.shape[0] != 1:
            raise ValueError(f"expected the input ids of one conversation, got a batch of {input_ids.shape[0]}")
        positions = self.positions(input_ids, runs, encoded)
        return {"mm_encoder_outputs": {self.modality: self._encoder_outputs(runs, encoded)}, "position_ids": positions}

    # --- positions ---------------------------------------------------------------------

    def unpruned_indices(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The unmodified conversation's input ids ``[1, L_full]`` (every image's placeholder
        run at its full length) and, for each of the ``L`` tokens fed, its index in them
        (a new token, origin -1, takes its image's last token)."""
        ids = input_ids[0].cpu()
        placeholder = self.placeholder_token_id
        starts = _run_starts(ids == placeholder)
        counts = [int(run.embeds.shape[0]) for run in runs]
        full_counts = [int(item.features.shape[1]) for item in encoded]
        if 0 in counts:
            raise ValueError(f"image {counts.index(0) + 1} has no visual token left; every image needs at least one")
        if len(starts) != len(runs):
            raise ValueError(f"the input ids hold {len(starts)} image placeholder runs but {len(runs)} images were given")
        index = torch.arange(ids.numel())
        shift = torch.zeros_like(index)
        for start, count, full in zip(starts, counts, full_counts):
            shift[start + count:] += full - count
        index = index + shift
        for start, count, run, full in zip(starts, counts, runs, full_counts):
            origin = run.origin.cpu().long()
            if int(origin.max()) >= full:
                raise ValueError(f"a visual token's origin {int(origin.max())} is outside its image's {full} tokens")
            origin = torch.where(origin >= 0, origin, full - 1)
            index[start:start + count] = index[start] + origin
        full_ids = torch.full((ids.numel() + sum(full_counts) - sum(counts),), placeholder, dtype=ids.dtype)
        text = ids != placeholder
        full_ids[index[text]] = ids[text]
        return full_ids[None], index

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
        grid = torch.cat([item.pixel_inputs["image_grid_thw"] for item in encoded]) if encoded else None
        token_types = (full_ids == self.placeholder_token_id).int()
        return self.model.model.get_rope_index(full_ids, mm_token_type_ids=token_types, image_grid_thw=grid)

    # --- features ----------------------------------------------------------------------

    def _encoder_outputs(self, runs: list[VisualRun], encoded: list):
        features = [run.embeds for run in runs]
        if not all(item.deepstack for item in encoded):
            return BaseModelOutputWithPooling(pooler_output=features)
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        layers = len(encoded[0].deepstack)
        deepstack = [[_cut(item.deepstack[layer][0], run.origin) for run, item in zip(runs, encoded)] for layer in range(layers)]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=features, deepstack_features=deepstack)


class QwenLayout(FamilyLayout):
    """Qwen-VL's geometry from its processor's numbers: the image resized to multiples of one
    merged token's side within the pixel limits, one view, tokens fed in output order."""

    preset = "qwen2-vl"
    cls_slot = False

    def __init__(self, token_pixels: int, min_pixels: int, max_pixels: int):
        self.token_pixels = token_pixels
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    def grid_shape(self, image_size) -> tuple[int, int]:
        """(rows, cols) of merged tokens for an image of ``image_size``."""
        width, height = image_size
        resized_h, resized_w = smart_resize(height, width, factor=self.token_pixels, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return resized_h // self.token_pixels, resized_w // self.token_pixels

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        rows, cols = self.grid_shape(image_size)
        return [rows * cols]

    def unmodified_tokens(self, image_size, modality="image") -> int:
        return self.selectable_tokens(image_size)[0]

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        # The processor resizes the whole image (no crop, no padding) to rows x cols merged tokens.
        rows, cols = self.grid_shape(image_size)
        return [PatchGrid(rows, cols, (0.0, 0.0, float(image_size[0]), float(image_size[1])), label="image")]

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        # Kept tokens in output order, then any merged tokens (new: origin -1).
        return views_in_sequence(kept, merged, False, False, stride=None)


def _cut(features: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` at ``origin``; a new token (origin -1) gets zeros (nothing added)."""
    origin = origin.to(features.device)
    rows = features[origin.clamp(min=0)]
    return torch.where((origin >= 0)[:, None], rows, torch.zeros_like(rows))


def _run_starts(mask: torch.Tensor) -> list[int]:
    """Start index of every run of True in a 1-D bool mask."""
    previous = torch.cat([torch.zeros(1, dtype=torch.bool), mask[:-1]])
    return (mask & ~previous).nonzero().flatten().tolist()


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
