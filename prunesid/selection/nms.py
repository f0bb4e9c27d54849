"""Stage 3, intra-group NMS: inside each group, greedy NMS in importance order (take the
most important remaining token, discard the rest of the group more similar to it than tau,
repeat), for all groups and views at once."""

from __future__ import annotations

import torch

from prunesid import devices
from prunesid.selection import nms_blocks
from prunesid.selection.ranking import rank_within_groups

# Above this threshold no cosine similarity (at most 1 plus float32 rounding) can exceed
# tau, so NMS cannot suppress anything and is skipped.
_NO_SUPPRESSION_TAU = 1.001


def intra_group_nms(xn, group_of, scores, rank, tau, num_groups=None):
    """Greedy NMS inside every group, all groups and images at once.

    Greedy NMS (take the most important remaining token of the group, discard the rest of
    the group more similar to it than tau, repeat) keeps token j exactly when no *kept*
    token of its group that is more important has similarity > tau with it. That rule is
    resolved by propagation on the conflict graph instead of step by step (see
    nms_blocks.resolve_greedy_nms), and only similarities inside groups are computed.

    Returns [B, T] long: each survivor's place among its group's survivors (the order the
    greedy NMS takes them), -1 for discarded tokens. Zero-importance tokens are never taken.
    """
    num_tokens = group_of.shape[1]
    takeable = scores > 0
    # The shortcut needs tau read back; on a GPU the rounds below find the same survivors
    # (no conflicts, one round) without that wait.
    if devices.waits_are_free(xn.device) and bool((tau > _NO_SUPPRESSION_TAU).all()):
        kept = takeable  # no similarity can exceed tau: nothing is discarded
    else:
        kept = nms_blocks.greedy_nms_survivors(xn, group_of, rank, takeable, tau, num_groups)
    within = rank_within_groups(group_of, torch.where(kept, rank, rank + num_tokens))
    return torch.where(kept, within, torch.full_like(within, -1))
