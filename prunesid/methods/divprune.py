"""DivPrune: keep the most diverse subset of the visual tokens (max-min diversity, greedy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prunesid.compression import Compression
from prunesid.methods.base import PressInfo, keep_cls_option
from prunesid.methods.common import PerViewPress, Views
from prunesid.methods.registry import register_press
from prunesid.options import option

SPACES = ("projected", "tower")


@dataclass(kw_only=True)
class DivPruneResult(Compression):
    """DivPrune's result: the kept tokens plus the order the greedy took them in."""

    method: str = "divprune"
    rank: torch.Tensor  # [B, T] long: step at which the greedy took the token, -1 not taken
    space: str = "projected"  # where the cosine distances were measured

    TOKEN_FIELDS: ClassVar[dict] = {**Compression.TOKEN_FIELDS, "rank": -1}


@register_press("divprune")
@dataclass(frozen=True)
class DivPrune(PerViewPress):
    """DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large
    Multimodal Models", CVPR 2025): keep the subset of visual tokens whose smallest pairwise
    distance is largest (a max-min diversity problem), solved greedily.

    As in the authors' released code (vbdi/divprune, ``LlavaMetaForCausalLM.DivPrune``): the
    distance is 1 - cosine similarity; the first token taken is the one farthest from its
    nearest neighbour (the second-smallest entry of its column of the distance matrix, the
    smallest being its distance to itself); each next token is the one whose distance to the
    nearest token taken so far is largest (first index on ties). The kept tokens go to the
    language model in position order, as the authors' code sorts them. Their code selects
    among the projected visual tokens at the language model's input, and this press does
    too (``space="projected"``). Where this differs from their code: a token already taken
    is never taken again (their loop could take it twice when every remaining token is an
    exact duplicate of a taken one, passing fewer distinct tokens), and on LLaVA-NeXT each
    view (base image, tile) is pruned on its own with the per-view budget among the patches
    the unpadding keeps, like every press here, where their code prunes the whole packed
    sequence, newline tokens included, at once.

    The authors give the budget as a ratio of the visual tokens; here it is N per view.
    """

    space: str = option(
        "projected", "where cosine distances are measured: \"projected\", the language model's input space after "
        "the family's projector (the authors' code), or \"tower\", the vision tower's features (tokens without a "
        "projector are measured as given)", choices=SPACES,
    )
    keep_cls: bool = keep_cls_option(
        False, "pass the tower's CLS token through; off as in the authors' code, which selects among the LLaVA "
        "patch tokens only",
    )

    info: ClassVar[PressInfo] = PressInfo(
        label="DivPrune",
        paper="Alvar et al., CVPR 2025",
        summary="max-min diversity of the kept tokens (greedy)",
        uses=("projector",),
        order=20,
    )

    def compress_views(self, views: Views) -> DivPruneResult:
        x, valid = views.features, views.valid
        if self.space == "projected" and views.tokens.project is not None:
            batch, length, width = x.shape
            with torch.no_grad():
                x = views.tokens.project(x.reshape(batch * length, width)).reshape(batch, length, -1)
        picks = max_min_greedy(x, valid, max(views.keep))  # the whole batch at once
        rank = torch.full(valid.shape, -1, dtype=torch.long, device=valid.device)
        indices = []
        for view, count in enumerate(views.keep):
            taken = picks[view, :count].to(valid.device)
            rank[view, taken] = torch.arange(count, device=valid.device)
            indices.append(taken.sort().values)
        return self.result(views, indices, DivPruneResult, rank=rank, space=self.space)


def cosine_distances(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, T]`` float32: 1 - cosine similarity between the tokens of each view."""
    xn = F.normalize(x.float(), dim=-1)
    return 1.0 - torch.matmul(xn, xn.transpose(1, 2))


def max_min_greedy(x: torch.Tensor, valid: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, steps]`` indices taken, in order, by the max-min diversity greedy on each view's
    valid tokens. Rows beyond a view's number of valid tokens are meaningless."""
    distance = cosine_distances(x)
    batch, length, _ = distance.shape
    steps = min(steps, length)
    rows = torch.arange(batch, device=distance.device)
    valid = valid.to(distance.device)
    # A token that may not be kept is nobody's neighbour and is never a candidate.
    distance = distance.masked_fill(~valid[:, :, None], float("inf"))
    # First token: farthest from its nearest neighbour (second-smallest of its column).
    nearest = torch.topk(distance, min(2, length), dim=1, largest=False).values[:, -1, :]
    score = nearest.masked_fill(~valid, float("-inf"))
    picks = torch.empty(batch, steps, dtype=torch.long, device=distance.device)
    closest = torch.full_like(score, float("inf"))  # distance to the nearest token taken so far
    unavailable = ~valid
    for step in range(steps):
        pick = torch.argmax(score, dim=1)  # first index on ties, as torch.argmax documents
        picks[:, step] = pick
        closest = torch.minimum(closest, distance[rows, pick])
        unavailable[rows, pick] = True
        score = closest.masked_fill(unavailable, float("-inf"))
    return picks
