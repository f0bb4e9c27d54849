"""The CLS attention under tensor parallelism, on the shapes each rank holds.

A rank of a TP group holds ``heads / TP`` whole heads of a CLIP layer's fused qkv_proj. Here
each rank is a stand-in layer with exactly that shard of a transformers CLIP layer's
weights; the all-reduce is the sum over the ranks. Every rank must end with what the
library computes on the unsharded layer (prunesid.family_kit.importance).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

from prunesid.family_kit.importance import cls_attention_and_keys
from prunesid.vllm.heads import layer_importance, partial_head_sums

HEADS, WIDTH = 4, 64


@pytest.fixture(scope="module")
def layer():
    config = CLIPVisionConfig(hidden_size=WIDTH, intermediate_size=128, num_attention_heads=HEADS)
    torch.manual_seed(0)
    return CLIPEncoderLayer(config).eval()


def rank_layer(layer, rank: int, tp: int):
    """Rank ``rank`` of ``tp``: its heads' rows of q, k and v, fused as QKVParallelLinear
    lays out a shard (local q, then local k, then local v)."""
    attention = layer.self_attn
    head_dim, local = attention.head_dim, HEADS // tp
    rows = slice(rank * local * head_dim, (rank + 1) * local * head_dim)
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    weight = torch.cat([p.weight[rows] for p in projections])
    bias = torch.cat([p.bias[rows] for p in projections])
    qkv = lambda x: (torch.nn.functional.linear(x, weight, bias), None)  # noqa: E731
    return SimpleNamespace(
        layer_norm1=layer.layer_norm1,
        self_attn=SimpleNamespace(
            qkv_proj=qkv, num_heads_per_partition=local, num_heads=HEADS, head_dim=head_dim, scale=attention.scale, tp_size=tp,
        ),
    )


@pytest.mark.parametrize("tp", [1, 2, 4])
@torch.no_grad()
def test_every_rank_gets_the_unsharded_importance_and_keys(layer, tp):
    hidden = torch.randn(3, 17, WIDTH)
    expected_importance, expected_keys = cls_attention_and_keys(layer, hidden)
    ranks = [rank_layer(layer, rank, tp) for rank in range(tp)]
    # What each rank holds before the reduction: its own heads' sums.
    parts = [layer_importance(r, hidden, all_reduce=lambda t: t) for r in ranks]
    for rank, shard in enumerate(ranks):
        def all_reduce(tensor):  # the group's sum of the same tensor on every rank
            index = 0 if tensor.dim() == 2 else 1
            return sum(part[index] * (HEADS if index else 1) for part in parts)

        importance, keys = layer_importance(shard, hidden, all_reduce)
        assert importance.shape == (3, 17) and keys.shape == (3, 17, WIDTH // HEADS)
        torch.testing.assert_close(importance, expected_importance, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(keys, expected_keys, rtol=1e-5, atol=1e-6)
        # A rank alone holds only its heads' share once there is more than one rank.
        if tp > 1:
            assert not torch.allclose(parts[rank][0], expected_importance)


def test_partial_sums_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match=r"query must be \[V, h, 1, d\]"):
        partial_head_sums(torch.zeros(1, 2, 1, 8), torch.zeros(1, 3, 5, 8), 1.0)
