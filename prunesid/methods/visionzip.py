"""VisionZip: dominant tokens by CLS attention, plus contextual tokens merged from the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prunesid.compression import Compression
from prunesid.methods.base import Diagnostics, PressInfo, VisionTokens, keep_cls_option
from prunesid.methods.common import PerViewPress, Views
from prunesid.methods.registry import register_press
from prunesid.options import option

# The authors' split: 10 contextual tokens per 64 (54 + 10 at 64, 108 + 20 at 128, 162 + 30 at 192).
CONTEXTUAL_PER_64 = 10


@dataclass(kw_only=True)
class VisionZipResult(Compression):
    """VisionZip's result: the dominant tokens (``indices``), the contextual tokens
    (``merged``, after the dominant ones) and which tokens each contextual token covers
    (``merged_from``; its anchor, the token it was built on, in ``targets``)."""

    method: str = "visionzip"
    scores: torch.Tensor  # [B, T] float32: the CLS attention that ranked the dominant tokens
    targets: torch.Tensor  # [B, T] bool: the anchor of a contextual token
    space: str = "keys"  # where the merge similarities were measured: "keys" or "features"

    TOKEN_FIELDS: ClassVar[dict] = {**Compression.TOKEN_FIELDS, "scores": 0.0, "targets": False}


@register_press("visionzip")
@dataclass(frozen=True)
class VisionZip(PerViewPress):
    """VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision
    Language Models", CVPR 2025): keep the *dominant* tokens, those the CLS token attends to
    most, and merge the others into a few *contextual* tokens.

    As in the authors' released code (dvlab-research/VisionZip, ``CLIPVisionTower_VisionZip``):
    - the dominant tokens are the top ``budget - reserved - contextual`` patches by the CLS
      token's attention in the feature layer (layer -2), summed over heads, and go to the
      language model in position order after the CLS;
    - the remaining patches, in position order, provide ``contextual`` anchors at a fixed
      stride (every ``R // contextual``-th of the R remaining, from the first); every other
      remaining patch joins the anchor it is most similar to, by cosine similarity of the
      feature layer's attention **keys averaged over heads** (their similarity space, not
      the hidden states);
    - a contextual token is its anchor's features **plus** the mean of the features of the
      patches that joined it (their code; the paper's text describes an average), in the
      feature layer's space, so the projector maps it like any other token. They follow the
      dominant tokens, in anchor order.

    At the default split, budget 64 with the CLS is the authors' 54 + 10: CLS + 53 dominant
    patches + 10 contextual tokens. On LLaVA-NeXT every view (base image, tile) is
    compressed on its own with the per-view budget among the patches the unpadding keeps,
    and without a CLS slot (the packing has none), so a view gets 54 dominant patches + 10
    contextual tokens at 64; the authors' LLaVA-NeXT code also passes each tile's CLS.

    Without CLS attention (towers without a CLS token: SigLIP, Qwen-VL) there are no
    dominant tokens to choose: :meth:`compress` raises ValueError rather than guessing.
    Without keys (plain tensors), the merge similarities use the features themselves.
    """

    contextual: int | None = option(
        None, "contextual (merged) tokens per view; None = the authors' ratio, round(budget * 10 / 64) "
        "(10 at 64, 20 at 128, 30 at 192); 0 keeps dominant tokens only", minimum=0,
    )
    keep_cls: bool = keep_cls_option(
        True, "pass the tower's CLS token through, as the authors do (it is their first dominant token); "
        "ignored where the tower or the family has no CLS slot",
    )

    info: ClassVar[PressInfo] = PressInfo(
        label="VisionZip",
        paper="Yang et al., CVPR 2025",
        summary="dominant tokens by CLS attention + contextual (merged) tokens",
        requires=("cls_attention",),
        uses=("attention_keys",),
        diagnostics=Diagnostics(anchors="targets"),
        order=10,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.contextual is not None:
            room = self.budget - int(self.keep_cls)
            if self.contextual > room:
                raise ValueError(
                    f"contextual must be at most budget{' - 1 (the CLS)' if self.keep_cls else ''} = {room}, "
                    f"got {self.contextual}"
                )

    @property
    def contextual_tokens(self) -> int:
        """Contextual tokens per view at this budget (the authors' ratio unless given)."""
        if self.contextual is not None:
            return self.contextual
        return min((self.budget * CONTEXTUAL_PER_64 + 32) // 64, self.budget - int(self.keep_cls))

    def check_tokens(self, tokens: VisionTokens) -> None:
        if tokens.importance is None:
            raise ValueError(
                "VisionZip chooses its dominant tokens by the CLS token's attention, and these tokens come "
                "without it (a vision tower without a CLS token, e.g. SigLIP or Qwen-VL); use another method"
            )

    def compress_views(self, views: Views) -> VisionZipResult:
        x, valid, tokens = views.features, views.valid, views.tokens
        importance = tokens.importance.to(x.device).float()
        metric = tokens.keys if tokens.keys is not None else x
        batch, length, width = x.shape
        indices, merged = [], []
        merged_from = torch.full((batch, length), -1, dtype=torch.long, device=x.device)
        targets = torch.zeros(batch, length, dtype=torch.bool, device=x.device)
        for view, count in enumerate(views.keep):
            candidates = views.candidates(view)
            if count >= candidates.numel():  # keeps everything: nothing to merge
                indices.append(candidates)
                merged.append(x.new_zeros(0, width))
                continue
            contextual = min(self.contextual_tokens, count)
            every = candidates.numel() == length  # no gather (copy) when every token is selectable
            kept, anchors, others, joined, tokens_merged = zip_view(
                x[view] if every else x[view, candidates],
                importance[view] if every else importance[view, candidates],
                (metric[view] if every else metric[view, candidates]).to(x.device),
                count - contextual, contextual,
            )
            indices.append(candidates[kept])
            merged.append(tokens_merged)
            merged_from[view, candidates[anchors]] = torch.arange(anchors.numel(), device=x.device)
            merged_from[view, candidates[others]] = joined
            targets[view, candidates[anchors]] = True
        return self.result(
            views, indices, VisionZipResult, merged=merged, merged_from=merged_from,
            scores=importance.masked_fill(~valid, 0.0), targets=targets, space="keys" if tokens.keys is not None else "features",
        )


def zip_view(x: torch.Tensor, importance: torch.Tensor, metric: torch.Tensor, dominant: int, contextual: int):
    """VisionZip on one view's ``n`` tokens (``x`` [n, D], ``importance`` [n], ``metric``
    [n, d]). Returns ``(dominant, anchors, others, joined, contextual tokens [contextual, D])``:
    index tensors, ascending, of the dominant tokens, the anchors and the other remaining
    tokens, and for each of those others the anchor (0..contextual-1) it joined."""
    n = x.shape[0]
    kept = torch.topk(importance, dominant).indices.sort().values if dominant else importance.new_zeros(0, dtype=torch.long)
    is_dominant = torch.zeros(n, dtype=torch.bool, device=x.device)
    is_dominant[kept] = True
    remaining = (~is_dominant).nonzero().flatten()
    if contextual == 0:
        empty = remaining.new_zeros(0)
        return kept, empty, empty, empty, x.new_zeros(0, x.shape[1])
    stride = max(1, remaining.numel() // contextual)
    anchor_slots = torch.arange(0, remaining.numel(), stride, device=x.device)[:contextual]
    is_anchor = torch.zeros(remaining.numel(), dtype=torch.bool, device=x.device)
    is_anchor[anchor_slots] = True
    anchors, others = remaining[is_anchor], remaining[~is_anchor]
    unit = F.normalize(metric.float(), dim=-1)
    joined = torch.matmul(unit[others], unit[anchors].T).argmax(dim=1)
    # Members' sums as one matmul of a one-hot assignment over all n tokens (a scatter-add
    # into a few rows is a slow CPU path; the authors' code uses a matmul too).
    assignment = torch.zeros(anchors.numel(), n, dtype=torch.float32, device=x.device)
    assignment[joined, others] = 1.0
    counts = assignment.sum(dim=1).clamp(min=1)
    values = x.float()
    contextual_tokens = (values[anchors] + (assignment @ values) / counts[:, None]).to(x.dtype)
    return kept, anchors, others, joined, contextual_tokens
