"""Mini-Gemini (MGM, MGM-HD) built from transformers parts: a CLIP vision model (low-res
path), a ConvNeXt trunk (high-res "aux" path), patch-info mining and a causal LM.

Mining (the original ``unified_resampler``): each low-res token of a 24 x 24 view attends to
its own window of high-res cells (``S / 24`` square, 8 x 8 for the released models), query
from ``vlm_uni_query_projector``, keys / values from ``vlm_uni_aux_projector`` /
``vlm_uni_val_projector``; the token becomes ``x + softmax(q k^T / sqrt(D)) v``. HD
(``image_grid`` 2, ``image_global``): views [global, crop00, crop01, crop10, crop11]; the
crops mine the matching quarter of the aux map, the global view the whole map resized by 1/2.

The model knows nothing of a file format: ``prunesid.families.mini_gemini.checkpoint`` builds it
from the released checkpoints and writes it back (``save_original``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, ConvNextConfig
from transformers.models.convnext.modeling_convnext import ConvNextEmbeddings, ConvNextStage

# What the released checkpoints name by path instead of describing: OpenAI CLIP ViT-L/14-336
# and OpenCLIP's convnext_large_d_320 trunk.
CLIP_L_336 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
    patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
)
CONVNEXT_LARGE = dict(hidden_sizes=[192, 384, 768, 1536], depths=[3, 3, 27, 3])


class AuxTower(nn.Module):
    """The ConvNeXt trunk (stem + stages, no head); every stage's output resized to stage
    0's size (bilinear) and concatenated along channels."""

    def __init__(self, hidden_sizes: list[int], depths: list[int]):
        super().__init__()
        config = ConvNextConfig(hidden_sizes=list(hidden_sizes), depths=list(depths), hidden_act="gelu", layer_scale_init_value=1e-6)
        self.embeddings = ConvNextEmbeddings(config)
        self.stages = nn.ModuleList()
        previous = hidden_sizes[0]
        for index, (width, depth) in enumerate(zip(hidden_sizes, depths)):
            self.stages.append(ConvNextStage(config, previous, width, stride=2 if index else 1, depth=depth))
            previous = width

    @property
    def channels(self) -> int:
        return sum(stage.layers[0].pwconv2.out_features for stage in self.stages)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(pixels)
        outputs = []
        for stage in self.stages:
            hidden = stage(hidden)
            outputs.append(hidden)
        size = outputs[0].shape[-2:]
        resized = [outputs[0]] + [F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False).to(out.dtype) for out in outputs[1:]]
        return torch.cat(resized, dim=1)


def _norm_linear(width_in: int, width_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(width_in), nn.Linear(width_in, width_out))


class MiniGeminiModel(nn.Module):
    """The whole model. ``config`` is a :class:`MiniGeminiConfig`; ``language_model`` a
    transformers causal LM (Llama, Gemma, Mistral, Mixtral)."""

    def __init__(self, config, language_model: nn.Module):
        super().__init__()
        self.config = config
        self.language_model = language_model
        self.vision_tower = CLIPVisionModel(CLIPVisionConfig(**config.vision))
        self.aux_tower = AuxTower(**config.aux)
        width, aux_width, text_width = config.vision["hidden_size"], self.aux_tower.channels, config.text_config.hidden_size
        self.query_projector = _norm_linear(width, width)
        self.aux_projector = _norm_linear(aux_width, width)
        self.val_projector = _norm_linear(aux_width, width)
        # mlp2x_gelu
        self.mm_projector = nn.Sequential(nn.Linear(width, text_width), nn.GELU(), nn.Linear(text_width, text_width))

    @property
    def views(self) -> int:
        return 1 + self.config.image_grid ** 2 if self.config.image_global else self.config.image_grid ** 2

    # --- vision ---------------------------------------------------------------------

    def low_res_tokens(self, views: torch.Tensor) -> torch.Tensor:
        """``[V, 3, 336, 336]`` -> ``[V, 576, D]``: the select layer, CLS dropped."""
        hidden = self.vision_tower(views, output_hidden_states=True).hidden_states
        return hidden[self.config.select_layer][:, 1:]

    def aux_windows(self, pixels_aux: torch.Tensor) -> torch.Tensor:
        """``[1, 3, A, A]`` -> ``[V, C, s, s]``: the aux map each view mines, in view order."""
        aux = self.aux_tower(pixels_aux)
        grid = self.config.image_grid
        parts = []
        if self.config.image_global:
            parts.append(F.interpolate(aux.float(), scale_factor=1 / grid, mode="bilinear", align_corners=False).to(aux.dtype))
        side = aux.shape[-1] // grid
        for row in range(grid):
            for col in range(grid):
                parts.append(aux[..., row * side:(row + 1) * side, col * side:(col + 1) * side])
        return torch.cat(parts, dim=0)

    def mine(self, tokens: torch.Tensor, windows: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Patch-info mining of ``tokens`` ``[V, n, D]`` against their windows of ``windows``
        ``[V, C, s, s]``; ``index`` ``[V, n]`` says which of the 576 tokens each row is
        (None: all, in order). Per token: mining ``k`` before or after choosing it is the same."""
        views, channels, side, _ = windows.shape
        per_side = int(round((tokens.shape[1] if index is None else self.config.tokens_per_view) ** 0.5))
        cell = side // per_side
        cells = windows.reshape(views, channels, per_side, cell, per_side, cell).permute(0, 2, 4, 3, 5, 1)
        cells = cells.reshape(views, per_side * per_side, cell * cell, channels)
        if index is not None:
            cells = torch.gather(cells, 1, index[..., None, None].expand(-1, -1, cell * cell, channels))
        query = self.query_projector(tokens)[:, :, None]
        keys = self.aux_projector(cells)
        values = self.val_projector(cells)
        logits = (query @ (keys.transpose(-1, -2) / keys.shape[-1] ** 0.5)).nan_to_num()
        return tokens + (logits.softmax(-1) @ values).mean(2)

    def encode_images(self, pixel_values: torch.Tensor, pixel_values_aux: torch.Tensor) -> torch.Tensor:
        """One image, every view, unmodified: ``[V * 576, H]`` in the LLM's width."""
        tokens = self.low_res_tokens(pixel_values)
        mined = self.mine(tokens, self.aux_windows(pixel_values_aux))
        return self.mm_projector(mined).flatten(0, 1)

    # --- language -------------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor, image_features: list[torch.Tensor]) -> torch.Tensor:
        """Token embeddings with the image placeholders' rows replaced by ``image_features``
        (one run per image, in order)."""
        placeholder = input_ids == self.config.image_token_id
        embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
        features = torch.cat(list(image_features), dim=0).to(embeds.dtype) if image_features else embeds.new_zeros(0, embeds.shape[-1])
        if int(placeholder.sum()) != features.shape[0]:
            raise ValueError(f"the prompt holds {int(placeholder.sum())} image placeholder tokens but {features.shape[0]} image features were given")
        if self.config.scale_image_features:
            # Gemma: MGM scaled the whole inputs_embeds (image rows too) by sqrt(hidden); transformers 5
            # scales token embeddings inside the embedding layer only.
            features = features * torch.tensor(self.config.text_config.hidden_size ** 0.5, dtype=features.dtype)
        return embeds.masked_scatter(placeholder[..., None], features)

    def _features(self, pixel_values, pixel_values_aux, image_features):
        if image_features is not None:
            return list(image_features)
        if pixel_values is None:
            return []
        views = self.views
        return [
            self.encode_images(pixel_values[i * views:(i + 1) * views], pixel_values_aux[i:i + 1])
            for i in range(pixel_values_aux.shape[0])
        ]

    def forward(self, input_ids, attention_mask=None, pixel_values=None, pixel_values_aux=None, image_features=None, **kwargs):
        """The model's own forward: from pixels (``pixel_values`` ``[images * V, 3, 336, 336]``,
        ``pixel_values_aux`` ``[images, 3, A, A]``) or precomputed ``image_features``."""
        embeds = self.embed(input_ids, self._features(pixel_values, pixel_values_aux, image_features))
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, pixel_values=None, pixel_values_aux=None, image_features=None, **kwargs):
        embeds = self.embed(input_ids, self._features(pixel_values, pixel_values_aux, image_features))
        return self.language_model.generate(input_ids=input_ids, inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
