"""A literal, loop-by-loop transcription of docs/SPEC.md for one image, used as an oracle.

Slow on purpose: every step is written the way the specification reads, so the
vectorised select() can be checked against it on inputs the golden cases do not cover
(heavy suppression, zero importance, tiny budgets, many groups).
"""

from __future__ import annotations

import math

import numpy as np


def spec_select(groups, importance, similarity, tau, budget, reserved, cap):
    """Kept patch indices in reference order, given the grouping (so PCA is not re-done)."""
    num_tokens = len(groups)
    k = int(groups.max()) + 1 if num_tokens else 0
    members = [[i for i in range(num_tokens) if groups[i] == g] for g in range(k)]

    rankings, survivor_counts = [], []
    for group in members:
        ordered = sorted(group, key=lambda i: (-importance[i], i))
        remaining = [i for i in ordered if importance[i] > 0]
        survivors = []
        while remaining:
            leader = remaining.pop(0)
            survivors.append(leader)
            remaining = [j for j in remaining if not similarity[leader, j] > tau]
        discarded = [i for i in ordered if i not in survivors]
        rankings.append(survivors + discarded)
        survivor_counts.append(len(survivors))

    sizes = [len(group) for group in members]
    to_keep = min(budget - reserved, num_tokens)
    lower = [min(1, n) for n in sizes]
    upper = [min(cap, n, c) for n, c in zip(sizes, survivor_counts)]
    while sum(upper) < min(budget, num_tokens):
        upper = [min(u + 1, n) for u, n in zip(upper, sizes)]
    remaining_budget = max(0, to_keep - sum(lower))
    total = sum(survivor_counts)
    shares = np.array([c / total if total else 0.0 for c in survivor_counts], dtype=np.float32)
    # float32 running sums as torch.cumsum makes them on CPU: accumulated in double,
    # each partial sum rounded to float32.
    cumulative = np.cumsum(shares.astype(np.float64)).astype(np.float32)
    rounded = [int(np.round(np.float32(p) * np.float32(remaining_budget))) for p in cumulative]
    extra = [rounded[g] - (rounded[g - 1] if g else 0) for g in range(k)]
    quotas = [min(lower[g] + extra[g], upper[g]) for g in range(k)]
    target = sum(lower) + remaining_budget
    for g in sorted(range(k), key=lambda g: (-survivor_counts[g], g)):
        missing = target - sum(quotas)
        if missing <= 0:
            break
        quotas[g] += min(upper[g] - quotas[g], missing)
    kept = []
    for g in range(k):
        kept.extend(rankings[g][: quotas[g]])
    return kept, quotas, survivor_counts


def cosine_similarity(features):
    normed = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    return normed @ normed.T


def default_cap(budget):
    return 5 * math.ceil(budget / 64)
