"""LLaVA-OneVision: a SigLIP tower (no CLS), anyres_max_9 tiles for an image, pooled frames
for a video (transformers' ``LlavaOnevisionForConditionalGeneration``,
``llava-hf/llava-onevision-qwen2-7b-ov-hf`` and its 0.5B / 72B siblings).

What the unmodified model feeds its LLM (read from transformers' modeling_llava_onevision):

- an image: the base view (the whole image resized to 384 x 384: 27 x 27 = 729 tokens), then
  the tiles (a grid of 384 px tiles chosen among the anyres_max_9 pinpoints) stitched into one
  patch grid, *projected into the LLM's width*, unpadded, and, when that grid holds more than
  1.1^2 x 9 x 729 tokens, bilinearly downscaled; read row by row, ``image_newline`` after
  every row;
- a video: every frame's 729 projected tokens pooled 2 x 2 (bilinear, 27 x 27 -> 14 x 14 =
  196), frame after frame, one ``image_newline`` at the end of the clip;
- several images in one sample of the processor (``batch_num_images`` > 1, a nested image
  list): each image padded to a square, one view of 729 tokens and a newline.

Where tokens are cut: after the model's own projection, unpadding, downscaling and pooling,
before any newline is inserted, so every press chooses among exactly the tokens the model
would feed, in the LLM's width (``project`` is the identity here). A *view* is the base view,
each tile, each frame. After a downscale a tile's view holds the downscaled tokens whose
centres fall in that tile. Every view is a 27 x 27 slot grid (a frame 14 x 14); the slots the
unpadding removed, or that a downscaled tile does not fill, are not selectable. The newline
tokens are laid out by the model's rule, so their count depends on the image size alone:
``newlines="rows"`` (the default: the model's own packing) feeds one per row of the tile grid,
``"authors"`` none (as the PruneSID authors' LLaVA-NeXT code); a clip's final newline, and that
of an image among several, is always fed. No CLS: importance is the PSCA score, and presses
that need the CLS attention (VisionZip) refuse.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import torch
from transformers.image_processing_utils import select_best_resolution
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches, unpad_image

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, VisualRun, register_family
from prunesid.family_kit.processors import ResizedFramesVideoProcessor, stand_in_video_processor
from prunesid.family_kit.importance import has_cls_token
from prunesid.families.llava.adapter import views_in_sequence
from prunesid.family_kit.towers import check_strategy, encode_views

NEWLINES = ("rows", "authors")
# Frames a clip is sampled to when the checkpoint's video processor names no count: the
# setting LLaVA-OneVision is evaluated with (lmms-eval's max_frames_num).
DEFAULT_FRAMES = 32


@register_family("llava_onevision", "LlavaOnevisionForConditionalGeneration", "SigLIP, anyres_max_9 tiles, pooled video frames: LLaVA-OneVision")
class OneVision(Family):
    pixel_input_keys = ("image_sizes", "batch_num_images")

    def __init__(self, model, processor, newlines: str = "rows"):
        super().__init__(model, processor)
        config = model.config
        self.vision_tower = model.model.vision_tower
        self.feature_layer = config.vision_feature_layer
        self.strategy = config.vision_feature_select_strategy
        if has_cls_token(self.vision_tower):
            raise ValueError("LLaVA-OneVision packs square grids of patches from a SigLIP tower; this tower has a CLS token")
        check_strategy(self.vision_tower, self.strategy)
        vision = config.vision_config
        self.tile_size = vision.image_size
        self.aspect_ratio = config.vision_aspect_ratio
        self.num_frames = int(getattr(getattr(processor, "video_processor", None), "num_frames", None) or DEFAULT_FRAMES)
        self.layout = OneVisionLayout(
            config.image_grid_pinpoints, vision.image_size, vision.image_size // vision.patch_size,
            max_tiles(config.vision_aspect_ratio), self.num_frames, newlines,
        )

    def placeholder_for(self, modality: str) -> int:
        if modality == "video":
            return self.model.config.video_token_id
        return super().placeholder_for(modality)

    def preprocess_video(self, frames) -> dict:
        """``pixel_values_videos`` ``[1, F, 3, 384, 384]``: the processor's video processor
        (without torchvision, :class:`prunesid.family_kit.processors.ResizedFramesVideoProcessor`)."""
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is None:
            raise ValueError("this LLaVA-OneVision processor has no video processor: load it with prunesid.load_vlm or AutoProcessor")
        clip = np.stack([np.asarray(frame.convert("RGB")) for frame in frames])
        return {"pixel_values_videos": video_processor(videos=[clip], return_tensors="pt")["pixel_values_videos"]}

    def _projected(self, views: torch.Tensor) -> torch.Tensor:
        """``[V, 3, H, W]`` pixels -> ``[V, 729, H_llm]``: the feature layer, projected."""
        tower = self.vision_tower
        out = encode_views(tower, views.to(tower.device, tower.dtype), self.feature_layer, self.strategy)
        return self.model.model.multi_modal_projector(out.features)

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        if "pixel_values_videos" in pixel_inputs:
            frames = self._projected(pixel_inputs["pixel_values_videos"][0])
            return _tokens(self.model.model.apply_pooling(frames))
        pixels = pixel_inputs["pixel_values"][0]
        if among_several(pixel_inputs):
            return _tokens(self._projected(pixels[:1]))
        sizes = pixel_inputs["image_sizes"]
        height, width = (int(v) for v in sizes[0])
        count = image_size_to_num_patches(image_size=[height, width], grid_pinpoints=self.layout.pinpoints, patch_size=self.tile_size)
        # The model's own packing without newlines: base view, then the unpadded (and maybe
        # downscaled) tile grid row by row.
        packed, _ = self.model.model.pack_image_features(
            [self._projected(pixels[:count])], sizes, image_newline=None, vision_aspect_ratio=self.aspect_ratio
        )
        return _tokens(self.layout.views_of(packed[0], (width, height)))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features  # the tokens are already in the LLM's width

    def extra_embeddings(self) -> torch.Tensor:
        return self.model.model.image_newline[None]

    def grids(self, image, pixel_inputs: dict | None = None, modality: str = "image") -> list[PatchGrid]:
        if modality == "image" and pixel_inputs is not None and among_several(pixel_inputs):
            return [self.layout.square_grid(image.size)]
        return self.layout.grids(image.size, modality)

    def valid_patches(self, pixel_inputs: dict, image_size, modality: str = "image") -> torch.Tensor | None:
        if modality == "image" and among_several(pixel_inputs):
            return None
        return self.layout.valid_patches(image_size, modality)

    def placeholder_runs(self, encoded, run: VisualRun) -> tuple[list[int], list[int]]:
        """The unmodified run: a clip's own frame count (a Video may hold fewer than
        ``num_frames``) x 196 + 1; an image among several 729 + 1; else the layout's."""
        if encoded.modality == "video":
            return [encoded.num_views * self.layout.pooled ** 2 + 1], [int(run.embeds.shape[0])]
        if among_several(encoded.pixel_inputs):
            return [self.layout.side ** 2 + 1], [int(run.embeds.shape[0])]
        return super().placeholder_runs(encoded, run)

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """The processor's images (each with the image count of its sample: several images in
        one sample are one square view each), then its clips, one input each."""
        items = []
        pixels = inputs.get("pixel_values")
        if pixels is not None:
            per_sample = inputs.get("batch_num_images")
            counts = [int(n) for n in per_sample for _ in range(int(n))] if per_sample is not None else [1] * pixels.shape[0]
            for row in range(pixels.shape[0]):
                height, width = (int(v) for v in inputs["image_sizes"][row])
                item = {"pixel_values": pixels[row:row + 1], "image_sizes": inputs["image_sizes"][row:row + 1], "batch_num_images": torch.tensor([counts[row]])}
                items.append(("image", item, (width, height)))
        videos = inputs.get("pixel_values_videos")
        for row in range(0 if videos is None else videos.shape[0]):
            height, width = videos.shape[-2:]
            items.append(("video", {"pixel_values_videos": videos[row:row + 1]}, (int(width), int(height))))
        return items

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        """Images as a list of ``[n, H]`` runs, videos as one ``[1, n, H]`` tensor: what the
        model's forward concatenates and scatters into each modality's placeholders in order."""
        by_modality: dict[str, list[torch.Tensor]] = {}
        for run, item in zip(runs, encoded):
            by_modality.setdefault(item.modality, []).append(run.embeds)
        outputs = {}
        if "image" in by_modality:
            outputs["image"] = BaseModelOutputWithPooling(pooler_output=by_modality["image"])
        if "video" in by_modality:
            outputs["video"] = BaseModelOutputWithPooling(pooler_output=torch.cat(by_modality["video"])[None])
        return {"mm_encoder_outputs": outputs} if outputs else {}


def _tokens(features: torch.Tensor) -> VisionOutput:
    return VisionOutput(features=features, cls=None, importance=None, cls_fed=False)


def among_several(pixel_inputs: dict) -> bool:
    """The processor put this image in a sample with other images (``batch_num_images`` > 1):
    the model then feeds it as one square-padded view."""
    count = pixel_inputs.get("batch_num_images")
    return count is not None and int(torch.as_tensor(count).max()) > 1


def max_tiles(vision_aspect_ratio: str) -> int:
    """9 for ``"anyres_max_9"``: the tile area beyond which the model downscales."""
    prefix = "anyres_max_"
    if not isinstance(vision_aspect_ratio, str) or not vision_aspect_ratio.startswith(prefix) or not vision_aspect_ratio[len(prefix):].isdigit():
        raise ValueError(f"vision_aspect_ratio must be 'anyres_max_<n>' (LLaVA-OneVision's tiling), got {vision_aspect_ratio!r}")
    return int(vision_aspect_ratio[len(prefix):])


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """The tile grid of one image size: the stitched patch grid, what unpadding keeps of it,
    the fed grid (after a downscale) and, per tile that keeps tokens, its view."""

    rows: int  # fed grid (after unpadding and any downscale)
    cols: int
    views: tuple  # per tile view: (label, grid indices [n] (row-major in the fed grid), slots [n], box origin (row, col))


class OneVisionLayout(FamilyLayout):
    """LLaVA-OneVision's geometry from its configuration: pinpoints, tile size, patches per
    side, the anyres_max tile count, the frame count and the ``newlines`` layout."""

    cls_slot = False  # no CLS token
    cls_attention = False  # importance is the PSCA score; VisionZip refuses

    def __init__(self, pinpoints, tile_size: int, side: int, max_tiles: int, frames: int, newlines: str = "rows"):
        if not isinstance(newlines, str) or newlines not in NEWLINES:
            raise ValueError(f"newlines must be one of {list(NEWLINES)} (the layout of compressed runs), got {newlines!r}")
        self.pinpoints = [list(point) for point in pinpoints]
        self.tile_size = tile_size
        self.side = side
        self.pooled = -(-side // 2)  # the 2 x 2 bilinear pooling of frames: ceil(27 / 2) = 14
        self.max_tiles = max_tiles
        self.frames = frames
        self.newlines = newlines

    # --- the tile grid ---------------------------------------------------------------------

    def tile_grid(self, image_size) -> TileGrid:
        return _tile_grid(self, tuple(image_size))

    def _build_tile_grid(self, image_size) -> TileGrid:
        width, height = image_size
        best_h, best_w = select_best_resolution((height, width), self.pinpoints)
        tile_rows, tile_cols, side = best_h // self.tile_size, best_w // self.tile_size, self.side
        # What the model's unpadding keeps of the stitched grid: a band of rows or columns.
        positions = torch.arange(tile_rows * side * tile_cols * side).view(1, tile_rows * side, tile_cols * side)
        kept = unpad_image(positions, [height, width])[0]
        rows, cols = kept.shape
        first_row, first_col = int(kept[0, 0]) // (tile_cols * side), int(kept[0, 0]) % (tile_cols * side)
        ratio = (rows * cols / (self.max_tiles * side * side)) ** 0.5
        downscaled = ratio > 1.1  # the model's rule and its integer sizes
        fed_rows, fed_cols = (int(rows // ratio), int(cols // ratio)) if downscaled else (rows, cols)
        # The tile each fed row / column lies in: where its centre falls in the stitched grid.
        tile_of_row = [(2 * first_row * fed_rows + (2 * r + 1) * rows) // (2 * side * fed_rows) for r in range(fed_rows)]
        tile_of_col = [(2 * first_col * fed_cols + (2 * c + 1) * cols) // (2 * side * fed_cols) for c in range(fed_cols)]
        views = []
        for tile_row in range(tile_rows):
            row_span = [r for r in range(fed_rows) if tile_of_row[r] == tile_row]
            for tile_col in range(tile_cols):
                col_span = [c for c in range(fed_cols) if tile_of_col[c] == tile_col]
                if not row_span or not col_span:
                    continue
                # Slot of the block's first token: its place in the tile (no downscale), else the corner.
                top = 0 if downscaled else first_row + row_span[0] - tile_row * side
                left = 0 if downscaled else first_col + col_span[0] - tile_col * side
                block_rows = torch.tensor(row_span)[:, None]
                block_cols = torch.tensor(col_span)[None, :]
                indices = (block_rows * fed_cols + block_cols).flatten()
                slots = ((block_rows - row_span[0] + top) * side + (block_cols - col_span[0] + left)).flatten()
                views.append((f"tile {tile_row},{tile_col}", indices, slots, (row_span[0] - top, col_span[0] - left)))
        return TileGrid(fed_rows, fed_cols, tuple(views))

    def fed_shape(self, image_size) -> tuple[int, int]:
        """(rows, cols) of the tile grid the model feeds (unpadded, downscaled beyond the limit)."""
        grid = self.tile_grid(image_size)
        return grid.rows, grid.cols

    def views_of(self, packed: torch.Tensor, image_size) -> torch.Tensor:
        """``[729 + rows x cols, H]`` (base view, fed tile grid) -> ``[V, 729, H]`` views,
        each tile's tokens at their slots, zeros elsewhere."""
        grid = self.tile_grid(image_size)
        base = self.side * self.side
        if packed.shape[0] != base + grid.rows * grid.cols:
            raise ValueError(f"the model packed {packed.shape[0]} tokens; the layout expects {base} + {grid.rows} x {grid.cols}")
        views = packed.new_zeros(1 + len(grid.views), base, packed.shape[1])
        views[0] = packed[:base]
        for view, (_, indices, slots, _) in enumerate(grid.views, start=1):
            views[view, slots.to(packed.device)] = packed[base + indices.to(packed.device)]
        return views

    # --- FamilyLayout ----------------------------------------------------------------------

    def valid_patches(self, image_size, modality="image") -> torch.Tensor | None:
        if modality == "video":
            return None
        grid = self.tile_grid(image_size)
        valid = torch.zeros(1 + len(grid.views), self.side * self.side, dtype=torch.bool)
        valid[0] = True
        for view, (_, _, slots, _) in enumerate(grid.views, start=1):
            valid[view, slots] = True
        return valid

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        if modality == "video":
            return [self.pooled * self.pooled] * self.frames
        return [self.side * self.side] + [int(indices.numel()) for _, indices, _, _ in self.tile_grid(image_size).views]

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        width, height = image_size
        whole = (0.0, 0.0, float(width), float(height))  # the base view and the frames: the image resized, no crop
        if modality == "video":
            return [PatchGrid(self.pooled, self.pooled, whole, label=f"frame {frame + 1}") for frame in range(self.frames)]
        grid = self.tile_grid(image_size)
        cell_w, cell_h = width / grid.cols, height / grid.rows  # the fed grid covers the image
        grids = [PatchGrid(self.side, self.side, whole, label="base")]
        for label, _, _, (row, col) in grid.views:
            x0, y0 = col * cell_w, row * cell_h
            grids.append(PatchGrid(self.side, self.side, (x0, y0, x0 + self.side * cell_w, y0 + self.side * cell_h), label=label))
        return grids

    def square_grid(self, image_size) -> PatchGrid:
        """The one view of an image among several: padded to a square, centred."""
        width, height = image_size
        edge = max(width, height)
        x0, y0 = -((edge - width) // 2), -((edge - height) // 2)
        return PatchGrid(self.side, self.side, (float(x0), float(y0), float(x0 + edge), float(y0 + edge)), label="image")

    def unmodified_tokens(self, image_size, modality="image") -> int:
        if modality == "video":
            return self.frames * self.pooled * self.pooled + 1
        rows, cols = self.fed_shape(image_size)
        return self.side * self.side + rows * (cols + 1)

    def extra_tokens(self, image_size, modality="image") -> int:
        if modality == "video":
            return 1
        return self.fed_shape(image_size)[0] if self.newlines == "rows" else 0

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        if modality == "video" or len(kept) == 1:
            # Frames (or an image among several) one after the other, then the one newline.
            stride = self.pooled * self.pooled if modality == "video" else None
            plan = views_in_sequence(kept, merged, False, False, stride=stride)
            newline = sum(int(k.numel()) for k in kept) + sum(merged)
            end = len(kept) * (stride or self.side * self.side)
            return FeedPlan(torch.cat([plan.order, torch.tensor([newline])]), torch.cat([plan.origin, torch.tensor([end])]))
        return self._arrange_tiles(kept, merged, image_size, compressed)

    def _arrange_tiles(self, kept, merged, image_size, compressed: bool) -> FeedPlan:
        """Base view first (its kept tokens in the press's order, then its merged ones), then
        the fed tile grid row by row with its newlines, then the tiles' merged tokens."""
        grid = self.tile_grid(image_size)
        base = self.side * self.side
        positions = []  # fed-grid position of every kept tile token, in source order
        for (_, indices, slots, _), picked in zip(grid.views, kept[1:]):
            slot_to_grid = torch.full((base,), -1, dtype=torch.long)
            slot_to_grid[slots] = indices
            where = slot_to_grid[picked.cpu().long()]
            if compressed and bool((where < 0).any()):
                raise ValueError("a kept tile token lies outside the tokens the model feeds")
            positions.append(where)  # -1: a slot the model has no token for (the unmodified run's padding)
        positions = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long)
        base_kept = int(kept[0].numel())
        merged_start = base_kept + positions.numel()
        newline = merged_start + sum(merged)
        source = torch.full((grid.rows * grid.cols,), -1, dtype=torch.long)
        placed = positions >= 0
        source[positions[placed]] = base_kept + torch.arange(positions.numel())[placed]
        # The unmodified packing: every row of the fed grid followed by its newline.
        packed = torch.cat([source.view(grid.rows, grid.cols), torch.full((grid.rows, 1), newline, dtype=torch.long)], dim=1).flatten()
        is_newline = torch.zeros(grid.rows, grid.cols + 1, dtype=torch.bool)
        is_newline[:, -1] = True
        fed = packed >= 0
        if compressed and self.newlines == "authors":
            fed &= ~is_newline.flatten()
        merged_rows = torch.arange(merged_start, newline)
        order = torch.cat([torch.arange(base_kept), merged_rows[: merged[0]], packed[fed], merged_rows[merged[0]:]])
        origin = torch.cat([
            kept[0].cpu().long(),
            torch.full((merged[0],), -1, dtype=torch.long),
            base + torch.arange(packed.numel())[fed],
            torch.full((sum(merged[1:]),), -1, dtype=torch.long),
        ])
        return FeedPlan(order.long(), origin)


@lru_cache(maxsize=64)
def _tile_grid(layout: OneVisionLayout, image_size: tuple[int, int]) -> TileGrid:
    # Cached per layout and size: every layout method asks for it several times per input.
    return layout._build_tile_grid(image_size)


# LlavaOnevisionVideoProcessor resizes every frame to one size, no crop (needs torchvision)
stand_in_video_processor("LlavaOnevisionProcessor", ResizedFramesVideoProcessor.from_checkpoint)
