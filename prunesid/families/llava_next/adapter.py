"""LLaVA-NeXT (anyres): a base view of the whole image plus a grid of 336 px tiles.

Every view is compressed on its own with the per-view budget (SPEC 8), choosing only among
the patches the model's unpadding keeps (``valid_patches``): the tiles' letterbox padding
never costs budget. The kept tokens are then laid out the way the model packs its own
features: base view first, then the tiles stitched into one large patch grid, unpadded and
read row by row. The unmodified model puts ``image_newline`` after every row; a compressed
run follows the ``newlines`` option:

- ``"authors"`` (default): no newline token at all, as the PruneSID authors' LLaVA-NeXT
  code feeds its compressed features (its ``image_newline`` expansion is built but never
  used), so the numbers of the paper were measured this way. The language model receives
  exactly the views' tokens: views x N (a view with fewer selectable patches than N feeds
  all of them).
- ``"rows"``: one newline after every row of the unpadded grid, whatever was kept in it:
  views x N plus a count that depends on the image size only.

Either way every press feeds the same number of tokens at the same N, and that number is
known before encoding (:meth:`AnyResLayout.fed_tokens`). The packing has no slot for a CLS
token, so ``keep_cls`` does not apply here and each view spends its whole budget on patches.
"""

from __future__ import annotations

import math

import torch
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches, unpad_image

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, register_family
from prunesid.family_kit.towers import check_strategy, encode_views


NEWLINES = ("authors", "rows")


@register_family("llava_next", "LlavaNextForConditionalGeneration", "anyres tiles: LLaVA-NeXT")
class AnyResTiles(Family):
    def __init__(self, model, processor, newlines: str = "authors"):
        super().__init__(model, processor)
        config = self.config = model.config
        self.vision_tower = model.model.vision_tower
        self.feature_layer = config.vision_feature_layer
        check_strategy(self.vision_tower, config.vision_feature_select_strategy)
        if config.vision_feature_select_strategy != "default":
            raise ValueError(
                "LLaVA-NeXT packs square tiles of patches: vision_feature_select_strategy "
                f"{config.vision_feature_select_strategy!r} is not supported, only 'default'"
            )
        self.tile_size = config.vision_config.image_size
        self.side = self.tile_size // config.vision_config.patch_size
        self.layout = AnyResLayout(config.image_grid_pinpoints, self.tile_size, self.side, newlines)

    def _num_views(self, image_size_hw) -> int:
        return image_size_to_num_patches(
            image_size=list(image_size_hw), grid_pinpoints=self.config.image_grid_pinpoints, patch_size=self.tile_size
        )

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        pixels = pixel_inputs["pixel_values"][0]
        views = pixels[: self._num_views(pixel_inputs["image_sizes"][0].tolist())]
        tower = self.vision_tower
        return encode_views(tower, views.to(tower.device, tower.dtype), self.feature_layer, "default")

    def extra_embeddings(self) -> torch.Tensor:
        return self.model.model.image_newline[None]


class AnyResLayout(FamilyLayout):
    """LLaVA-NeXT's packing from its configuration: tile pinpoints, tile size, patches per side."""

    cls_slot = False  # the packing has no slot for a CLS
    cls_attention = True  # the CLIP tower has one (check_strategy refuses towers without)

    def __init__(self, pinpoints, tile_size: int, side: int, newlines: str = "authors"):
        if not isinstance(newlines, str) or newlines not in NEWLINES:
            raise ValueError(f"newlines must be one of {list(NEWLINES)} (LLaVA-NeXT's layout of compressed runs), got {newlines!r}")
        self.pinpoints = [list(point) for point in pinpoints]
        self.tile_size = tile_size
        self.side = side
        self.newlines = newlines

    def _tiles(self, image_size) -> tuple[int, int]:
        width, height = image_size
        best_h, best_w = select_best_resolution((height, width), self.pinpoints)
        return best_h // self.tile_size, best_w // self.tile_size

    def _visible(self, image_size, grid: torch.Tensor) -> torch.Tensor:
        """The big tile grid ``[rows, cols]`` with the model's own unpadding applied."""
        width, height = image_size
        return unpad_image(grid[None], [height, width])[0]

    def valid_patches(self, image_size, modality="image") -> torch.Tensor:
        """``[V, T]`` bool: patches the model's unpadding keeps (all of the base view; the
        tiles' letterbox padding is not), found with the model's own unpad_image."""
        tile_rows, tile_cols = self._tiles(image_size)
        side = self.side
        positions = torch.arange(tile_rows * side * tile_cols * side).view(tile_rows * side, tile_cols * side)
        grid = torch.zeros(positions.numel(), dtype=torch.bool)
        grid[self._visible(image_size, positions).flatten()] = True  # what the model's unpadding keeps
        grid = grid.view(tile_rows, side, tile_cols, side)
        tiles = grid.permute(0, 2, 1, 3).reshape(tile_rows * tile_cols, side * side)
        return torch.cat([torch.ones(1, side * side, dtype=torch.bool), tiles])

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        return self.valid_patches(image_size).sum(1).tolist()

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        width, height = image_size
        best_h, best_w = select_best_resolution((height, width), self.pinpoints)
        # The processor resizes into (best_w, best_h) keeping the aspect ratio, then pads evenly.
        scale_w, scale_h = best_w / width, best_h / height
        if scale_w < scale_h:
            new_w, new_h = best_w, min(math.ceil(height * scale_w), best_h)
        else:
            new_w, new_h = min(math.ceil(width * scale_h), best_w), best_h
        pad_x, pad_y = (best_w - new_w) // 2, (best_h - new_h) // 2
        to_image_x, to_image_y = width / new_w, height / new_h
        grids = [PatchGrid(self.side, self.side, (0.0, 0.0, float(width), float(height)), label="base")]
        for row in range(best_h // self.tile_size):
            for col in range(best_w // self.tile_size):
                x0 = (col * self.tile_size - pad_x) * to_image_x
                y0 = (row * self.tile_size - pad_y) * to_image_y
                box = (x0, y0, x0 + self.tile_size * to_image_x, y0 + self.tile_size * to_image_y)
                grids.append(PatchGrid(self.side, self.side, box, label=f"tile {row},{col}"))
        return grids

    def unpadded_shape(self, image_size) -> tuple[int, int]:
        """(rows, cols) of patches of the unpadded tile grid."""
        tile_rows, tile_cols = self._tiles(image_size)
        empty = torch.zeros(tile_rows * self.side, tile_cols * self.side)
        rows, cols = self._visible(image_size, empty).shape
        return int(rows), int(cols)

    def unmodified_tokens(self, image_size, modality="image") -> int:
        rows, cols = self.unpadded_shape(image_size)
        return self.side * self.side + rows * (cols + 1)

    def extra_tokens(self, image_size, modality="image") -> int:
        return self.unpadded_shape(image_size)[0] if self.newlines == "rows" else 0

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        side = self.side
        tile_rows, tile_cols = self._tiles(image_size)
        tile_kept = kept[1:]
        # Big-grid position of every kept tile token; sources: base kept, tile kept, merged, newline.
        positions = []
        for tile, patches in enumerate(tile_kept):
            tile_row, tile_col = divmod(tile, tile_cols)
            patches = patches.cpu().long()
            patch_row, patch_col = patches // side, patches % side
            positions.append((tile_row * side + patch_row) * (tile_cols * side) + tile_col * side + patch_col)
        positions = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long)
        base_kept = int(kept[0].numel())
        tiles_start = base_kept
        merged_start = base_kept + positions.numel()
        newline_row = merged_start + sum(merged)
        grid_h, grid_w = tile_rows * side, tile_cols * side
        source_row = torch.full((grid_h * grid_w,), -1, dtype=torch.long)
        source_row[positions] = tiles_start + torch.arange(positions.numel())
        visible = self._visible(image_size, source_row.view(grid_h, grid_w))
        # The unmodified packing: every visible row followed by its newline.
        newline_column = torch.full((visible.shape[0], 1), newline_row, dtype=torch.long)
        packed = torch.cat([visible, newline_column], dim=1).flatten()
        is_newline = torch.zeros_like(visible, dtype=torch.bool)
        is_newline = torch.cat([is_newline, torch.ones(visible.shape[0], 1, dtype=torch.bool)], dim=1).flatten()
        fed = packed >= 0
        if compressed and self.newlines == "authors":
            fed &= ~is_newline
        base_len = side * side
        merged_rows = torch.arange(merged_start, newline_row)
        order = torch.cat([
            torch.arange(base_kept), merged_rows[: merged[0]], packed[fed], merged_rows[merged[0]:],
        ])
        origin = torch.cat([
            kept[0].cpu().long(),
            torch.full((merged[0],), -1, dtype=torch.long),
            base_len + torch.arange(packed.numel())[fed],
            torch.full((sum(merged[1:]),), -1, dtype=torch.long),
        ])
        return FeedPlan(order.long(), origin)
