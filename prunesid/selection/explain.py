"""Why a token was kept or dropped: the decision a :class:`Selection` implies for one token,
worked out here (beside the stages that made it) so that front ends only draw it.

A token of a view is, by the stages of :func:`select`:

- ``"excluded"``: it took no part (``valid`` False, e.g. LLaVA-NeXT letterbox padding);
- ``"kept"``: within its group's quota: a survivor of the NMS taken early enough, or a
  suppressed token topping up a group whose quota exceeds its survivors (``survivor_rank``
  None then), or every token when the budget covers the view (``keep_all``);
- ``"quota_full"``: it survived the NMS, but its group kept its first ``group_quota``
  survivors in the order taken and it came later;
- ``"zero_importance"``: its importance is 0, and the NMS never takes such a token;
- ``"suppressed"``: the NMS discarded it. Its suppressor is the first survivor the greedy
  NMS took, among the more important tokens of its group (ties: the lower index first, the
  NMS's own order), whose cosine similarity with it exceeds tau.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from prunesid.selection.ranking import importance_rank
from prunesid.selection.result import Selection

STATUSES = ("kept", "suppressed", "quota_full", "zero_importance", "excluded")


@dataclass(frozen=True)
class TokenDecision:
    """The decision about one token and the numbers behind it (indices are token indices of
    the view; ranks are 1-based). Fields after ``status`` are None where they do not apply."""

    view: int
    token: int
    status: str  # one of STATUSES
    group: int | None = None
    num_groups: int | None = None
    group_size: int | None = None
    importance: float | None = None
    importance_rank: int | None = None  # within the group, by importance (ties: lower index first)
    survivor_rank: int | None = None  # order taken by the NMS within the group, survivors only
    group_survivors: int | None = None
    group_quota: int | None = None  # tokens the group keeps
    suppressor: int | None = None  # "suppressed": the survivor that discarded it
    similarity: float | None = None  # cosine similarity with the suppressor
    tau: float | None = None
    keep_all: bool = False  # the budget covers every token of the view

    def to_dict(self) -> dict:
        return asdict(self)


def explain(selection: Selection, features: torch.Tensor, view: int, token: int) -> TokenDecision:
    """Why ``token`` of ``view`` was kept or dropped by ``selection``.

    ``features``: the tokens the selection chose from, ``[B, T, D]`` (or ``[T, D]`` for the
    one view asked about), in the selection's index space. They are read only for a
    suppressed token, to find which survivor discarded it.
    """
    if not 0 <= view < selection.num_views:
        raise ValueError(f"view must be in [0, {selection.num_views - 1}], got {view}")
    num_tokens = selection.tokens_per_view
    if not 0 <= token < num_tokens:
        raise ValueError(f"token must be in [0, {num_tokens - 1}], got {token}")
    tokens = features[view] if features.dim() == 3 else features
    if tuple(tokens.shape[:1]) != (num_tokens,):
        raise ValueError(f"features hold {tokens.shape[0]} tokens for this view but the selection has {num_tokens}")

    groups = selection.groups[view].cpu()
    group = int(groups[token])
    if group < 0:
        return TokenDecision(view=view, token=token, status="excluded")
    scores = selection.scores[view].cpu().float()
    survivors = selection.survivors[view].cpu()
    survivor_rank = selection.survivor_rank[view].cpu()
    members = (groups == group).nonzero().flatten()
    rank = importance_rank(scores[None])[0]  # the order the NMS visits tokens in
    earlier = rank[members] < rank[token]
    score = float(scores[token])
    common = dict(
        view=view,
        token=token,
        group=group,
        num_groups=int(selection.num_groups[view]),
        group_size=int(members.numel()),
        importance=score,
        importance_rank=int(earlier.sum()) + 1,
        group_survivors=int(survivors[members].sum()),
        group_quota=int(selection.quotas[view, group]),
        tau=float(selection.tau[view]),
        keep_all=bool(selection.budget[view] - selection.reserved >= num_tokens),
    )
    if bool((selection.indices[view].cpu() == token).any()):
        taken = int(survivor_rank[token])
        return TokenDecision(**common, status="kept", survivor_rank=taken + 1 if taken >= 0 else None)
    if bool(survivors[token]):
        return TokenDecision(**common, status="quota_full", survivor_rank=int(survivor_rank[token]) + 1)
    if score <= 0:
        return TokenDecision(**common, status="zero_importance")
    suppressor, similarity = _suppressor(tokens, members[earlier & survivors[members]], survivor_rank, token, common["tau"])
    if suppressor is None:
        raise ValueError(f"token {token} of view {view} was neither kept nor suppressed by any survivor: the selection and the features disagree")
    return TokenDecision(**common, status="suppressed", suppressor=suppressor, similarity=similarity)


def _suppressor(tokens, candidates, survivor_rank, token, tau):
    """(index, similarity) of the first of ``candidates`` (more important survivors of the
    token's group) in the order the NMS took them whose similarity with ``token`` exceeds
    tau; (None, None) when there are no candidates."""
    if candidates.numel() == 0:
        return None, None
    rows = F.normalize(tokens[torch.cat([candidates, torch.tensor([token])]).to(tokens.device)].detach().float().cpu(), dim=-1)
    similarity = rows[:-1] @ rows[-1]
    order = torch.argsort(survivor_rank[candidates])
    candidates, similarity = candidates[order], similarity[order]
    above = (similarity > tau).nonzero().flatten()
    # Float rounding can put a similarity a hair under tau (the NMS computed it on the
    # device, in another order); then the closest survivor is named.
    pick = int(above[0]) if above.numel() else int(torch.argmax(similarity))
    return int(candidates[pick]), float(similarity[pick])
