"""Patch importance for CLIP-style towers: the CLS query's attention row, summed over heads.

Fast attention kernels (sdpa, flash) never materialise attention weights, and forcing eager
attention on a 7B model costs memory and time everywhere. One row is cheap to recompute from
the layer's own projections: softmax(q_cls . K^T * scale), which is exactly what eager
attention would have returned for that row.
"""

from __future__ import annotations

import torch


def tower_layers(vision_tower: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder layers of a CLIP/SigLIP-style tower, or None if it has another shape."""
    vision_model = getattr(vision_tower, "vision_model", vision_tower)
    encoder = getattr(vision_model, "encoder", None)
    return getattr(encoder, "layers", None)


def has_cls_token(vision_tower: torch.nn.Module) -> bool:
    vision_model = getattr(vision_tower, "vision_model", vision_tower)
    return hasattr(getattr(vision_model, "embeddings", None), "class_embedding")


def cls_attention(layer: torch.nn.Module, layer_input: torch.Tensor) -> torch.Tensor:
    """``[V, S]`` float32: attention of token 0 (CLS) to every token, summed over heads.

    ``layer_input`` is the hidden state entering ``layer`` (``[V, S, D]``); the layer must be
    pre-norm with ``layer_norm1`` and ``self_attn.{q,k}_proj`` as CLIP's is.
    """
    return cls_attention_and_keys(layer, layer_input)[0]


def cls_attention_and_keys(layer: torch.nn.Module, layer_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cls_attention` and, from the same projections, the layer's keys averaged over
    heads (``[V, S, head_dim]`` float32): the similarity space VisionZip merges in."""
    attention = layer.self_attn
    normed = layer.layer_norm1(layer_input)
    views, length, _ = normed.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    query = attention.q_proj(normed[:, :1]).view(views, 1, heads, head_dim).transpose(1, 2)
    keys = attention.k_proj(normed).view(views, length, heads, head_dim).transpose(1, 2)
    logits = torch.matmul(query, keys.transpose(2, 3)) * attention.scale
    # Eager attention takes its softmax in float32 and casts back: do the same.
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    return weights[:, :, 0, :].float().sum(dim=1), keys.mean(dim=1).float()
