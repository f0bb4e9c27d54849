"""The one place where PruneSID's budget-derived defaults live.

Every default of the method is a function of the *total* budget N (the number of visual
tokens the language model receives for one image, CLS included when it is passed through).
"""

from __future__ import annotations

import math


def default_groups(budget: int) -> int:
    """K = floor(N / 4), the paper's ablation optimum; at least one group."""
    return max(1, budget // 4)


def default_lam(budget: int) -> float:
    """lambda = N / 32, so that the NMS threshold is tau = lambda * rho."""
    return budget / 32


def group_cap(budget: int) -> int:
    """The per-group ceiling on kept tokens before top-up: 5 * ceil(N / 64)."""
    return 5 * math.ceil(budget / 64)


# PruneSID-Dyn: an image's budget N' = round(N * phi / phi_ref) is clamped to
# [DYNAMIC_MIN_FRACTION * N, DYNAMIC_MAX_FRACTION * N] (and to what the image can hold).
DYNAMIC_MIN_FRACTION = 0.5
DYNAMIC_MAX_FRACTION = 2.0
