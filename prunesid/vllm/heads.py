"""The CLS attention row and mean keys from a vLLM vision layer, under tensor parallelism.

vLLM shards a CLIP layer's fused ``qkv_proj`` by heads: with TP ranks, each holds
``num_heads / TP`` whole heads of queries, keys and values. The importance PruneSID reads
(the CLS query's attention over the tokens, summed over heads) and the keys VisionZip merges
with (averaged over heads) are sums over heads, so each rank reduces its own heads — a
softmax is per head, so a rank's heads are complete — and one all-reduce (a sum) over the
tensor-parallel group adds the ranks' parts. Dividing the keys by the total head count after
the sum gives the mean over every head.

:func:`partial_head_sums` is the per-rank part on plain tensors, so the reduction is tested
on sharded shapes without a process group (tests_vllm/test_heads.py).
"""

from __future__ import annotations

from typing import Callable

import torch


def partial_head_sums(query: torch.Tensor, keys: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One rank's share: ``query [V, h, 1, d]`` (the CLS row of its ``h`` heads), ``keys
    [V, h, S, d]`` -> (``[V, S]`` float32: the CLS attention summed over these heads, ``[V, S, d]``
    float32: the keys summed over these heads). The softmax is taken in float32 and cast
    back, as eager attention does."""
    if query.dim() != 4 or keys.dim() != 4 or query.shape[:2] != keys.shape[:2] or query.shape[2] != 1:
        raise ValueError(f"query must be [V, h, 1, d] and keys [V, h, S, d] with the same V and h, got {list(query.shape)} and {list(keys.shape)}")
    logits = torch.matmul(query, keys.transpose(2, 3)) * scale
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    return weights[:, :, 0, :].float().sum(dim=1), keys.float().sum(dim=1)


def reduced_head_sums(
    parts: tuple[torch.Tensor, torch.Tensor], total_heads: int, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's :func:`partial_head_sums` added (``all_reduce``: the group's sum, None on
    one rank): (importance ``[V, S]``, keys averaged over all ``total_heads`` ``[V, S, d]``)."""
    importance, keys = parts
    if all_reduce is not None:
        importance, keys = all_reduce(importance.contiguous()), all_reduce(keys.contiguous())
    return importance, keys / total_heads


def layer_importance(layer, layer_input: torch.Tensor, all_reduce=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLS attention and mean keys of a vLLM CLIP encoder layer (``layer_norm1``,
    ``self_attn.qkv_proj``) on ``layer_input`` ``[V, S, D]``, this rank's heads reduced with
    the others' through ``all_reduce`` (None: one rank holds every head)."""
    attention = layer.self_attn
    normed = layer.layer_norm1(layer_input)
    views, length, _ = normed.shape
    heads, head_dim = attention.num_heads_per_partition, attention.head_dim
    qkv, _ = attention.qkv_proj(normed)
    query, keys, _ = qkv.chunk(3, dim=-1)
    query = query[:, :1].reshape(views, 1, heads, head_dim).transpose(1, 2)
    keys = keys.reshape(views, length, heads, head_dim).transpose(1, 2)
    parts = partial_head_sums(query, keys, attention.scale)
    return reduced_head_sums(parts, attention.num_heads, all_reduce if attention.tp_size > 1 else None)
