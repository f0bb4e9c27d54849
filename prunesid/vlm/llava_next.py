"""LLaVA-NeXT (anyres): a base view of the whole image plus a grid of 336 px tiles.

Every view is compressed on its own with the per-view budget (SPEC 8), choosing only among
the patches the model's unpadding keeps (``valid_patches``): the tiles' letterbox padding
never costs budget. The kept tokens are then laid out the way the model packs its own
features: base view first, then the tiles stitched into one large patch grid, unpadded and
read row by row with ``image_newline`` after every row that still holds a kept token. That
keeps the newline's meaning ("a new row of the picture starts") true for the kept tokens.
The packing has no slot for a CLS token, so ``keep_cls`` does not apply here and each view
spends its whole budget on patches.
"""

from __future__ import annotations

import math

import torch
from PIL import Image
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches, unpad_image

from prunesid.geometry import PatchGrid
from prunesid.vlm.family import Family, VisionOutput, VisualRun, register_family
from prunesid.vlm.towers import check_strategy, encode_views


@register_family("llava_next", "LlavaNextForConditionalGeneration", "anyres tiles: LLaVA-NeXT")
class AnyResTiles(Family):
    cls_slot = False

    def __init__(self, model, processor):
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

    def _num_views(self, image_size_hw) -> int:
        return image_size_to_num_patches(
            image_size=list(image_size_hw), grid_pinpoints=self.config.image_grid_pinpoints, patch_size=self.tile_size
        )

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        pixels = pixel_inputs["pixel_values"][0]
        views = pixels[: self._num_views(pixel_inputs["image_sizes"][0].tolist())]
        tower = self.vision_tower
        return encode_views(tower, views.to(tower.device, tower.dtype), self.feature_layer, "default")

    def grids(self, image: Image.Image, pixel_inputs: dict) -> list[PatchGrid]:
        width, height = image.size
        best_h, best_w = select_best_resolution((height, width), self.config.image_grid_pinpoints)
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

    def valid_patches(self, pixel_inputs: dict) -> torch.Tensor:
        """``[V, T]`` bool: patches the model's unpadding keeps (all of the base view; the
        tiles' letterbox padding is not), found with the model's own unpad_image."""
        image_size_hw = pixel_inputs["image_sizes"][0].tolist()
        best_h, best_w = select_best_resolution(image_size_hw, self.config.image_grid_pinpoints)
        tile_rows, tile_cols, side = best_h // self.tile_size, best_w // self.tile_size, self.side
        positions = torch.arange(tile_rows * side * tile_cols * side).view(1, tile_rows * side, tile_cols * side)
        grid = torch.zeros(positions.numel(), dtype=torch.bool)
        grid[unpad_image(positions, image_size_hw).flatten()] = True  # what the model's unpadding keeps
        grid = grid.view(tile_rows, side, tile_cols, side)
        tiles = grid.permute(0, 2, 1, 3).reshape(tile_rows * tile_cols, side * side)
        return torch.cat([torch.ones(1, side * side, dtype=torch.bool), tiles])

    def layout(self, projected, kept, merged, cls, pixel_inputs, cls_fed) -> VisualRun:
        image_size_hw = pixel_inputs["image_sizes"][0].tolist()
        tiles, tile_kept = projected[1:], kept[1:]
        best_h, best_w = select_best_resolution(image_size_hw, self.config.image_grid_pinpoints)
        tile_rows, tile_cols = best_h // self.tile_size, best_w // self.tile_size
        side = self.side
        # Big-grid position of every kept tile token, and its row in the stacked features.
        positions = []
        for tile, patches in enumerate(tile_kept):
            tile_row, tile_col = divmod(tile, tile_cols)
            patches = patches.cpu()
            patch_row, patch_col = patches // side, patches % side
            positions.append((tile_row * side + patch_row) * (tile_cols * side) + tile_col * side + patch_col)
        positions = torch.cat(positions)
        features = torch.cat(list(tiles))
        grid_h, grid_w = tile_rows * side, tile_cols * side
        feature_row = torch.full((grid_h * grid_w,), -1, dtype=torch.long)
        feature_row[positions] = torch.arange(positions.numel())
        # The model's own unpad: crop the letterbox rows/columns from the big grid.
        visible = unpad_image(feature_row.view(1, grid_h, grid_w), image_size_hw)[0]
        newline_row = features.shape[0]
        rows_with_tokens = (visible >= 0).any(dim=1, keepdim=True)
        newline_column = torch.where(rows_with_tokens, newline_row, -1)
        packed = torch.cat([visible, newline_column], dim=1).flatten()
        present = packed >= 0
        # The unmodified run: the whole base view, then every visible row and its newline.
        base_len = side * side
        origin = torch.cat([
            kept[0].cpu().long(),
            torch.full((merged[0].shape[0],), -1, dtype=torch.long),
            base_len + torch.arange(packed.numel())[present],
            torch.full((sum(m.shape[0] for m in merged[1:]),), -1, dtype=torch.long),
        ])
        order = packed[present].to(features.device)
        newline = self.model.model.image_newline.to(features.dtype)[None]
        embeds = torch.cat([projected[0], merged[0], torch.cat([features, newline])[order], *merged[1:]])
        return VisualRun(embeds, origin)
