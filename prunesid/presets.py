"""Presets: the one place where PruneSID's derived defaults live, as policies of (N, T).

A preset turns the user's budget N and an image's number of selectable tokens T into every
derived setting: the budget actually kept (N_eff), K, lambda, the per-group cap, the
quantity tau is a multiple of, and the output order. Two are defined (docs/SPEC.md):

- ``"llava"`` (sections 1-5, the reference): N is the total per image, K = N / 4,
  lambda = N / 32, tau = lambda * rho.
- ``"qwen2-vl"`` (section 9, the authors' Qwen2-VL variant, selecting among merged tokens):
  N means "N per 576 tokens", so N_eff = max(round(T N / 576), 16); K = max(N_eff / 4, 4);
  lambda = max(18 N_eff / T, 1); tau = lambda * (upper-triangle mean of S, diagonal
  included); positions order when more than 150 tokens are kept; nothing pruned for T <= 16.

A dynamic budget (PruneSID-Dyn) works in the preset's own units: it shares the N_eff of
the views (tokens kept), so a "qwen2-vl" view's N'_eff lies within [N_eff / 2, 2 N_eff] and
its T tokens, and a view the preset leaves whole stays whole.

Each preset also carries its rules in words (:class:`PresetWords`: the K rule, the lambda
rule, what N counts), so that no front end branches on a preset's name.

Explicit ``groups`` / ``lam`` given to :func:`prunesid.select` override a preset's values.
:data:`DEFAULTS` holds the settings used when none is given (grouping, solver, preset, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

@dataclass(frozen=True)
class Defaults:
    """PruneSID's settings when the caller gives none, read by :func:`prunesid.select`,
    ``validate_settings``, the ``PruneSID`` press and the command line (one source).
    ``groups`` and ``lam`` are None: the preset derives K and lambda from (N, T)."""

    budget: int = 64  # N of a press or a front end; select() always takes it from the caller
    groups: int | None = None
    lam: float | None = None
    grouping: str = "psca"
    centering: str = "token"
    dynamic: bool = False
    phi_ref: float | None = None
    seed: int = 0
    order: str = "reference"
    solver: str = "exact"
    preset: str = "llava"


DEFAULTS = Defaults()

# PruneSID-Dyn: an image's budget N' = round(N * phi / phi_ref) is clamped to
# [DYNAMIC_MIN_FRACTION * N, DYNAMIC_MAX_FRACTION * N] (and to what the image can hold),
# N being the tokens the preset keeps without it (N_eff for "qwen2-vl").
DYNAMIC_MIN_FRACTION = 0.5
DYNAMIC_MAX_FRACTION = 2.0


def default_groups(budget: int) -> int:
    """K = floor(N / 4), the paper's ablation optimum; at least one group."""
    return max(1, budget // 4)


def default_lam(budget: int) -> float:
    """lambda = N / 32, so that the NMS threshold is tau = lambda * rho."""
    return budget / 32


def group_cap(budget: int) -> int:
    """The per-group ceiling on kept tokens before top-up: 5 * ceil(N / 64)."""
    return 5 * math.ceil(budget / 64)


@dataclass(frozen=True)
class PresetWords:
    """How front ends write a preset's rules, so that none branches on a preset's name
    (N: the budget; N_eff: the budget read through the preset; T: the view's selectable tokens)."""

    groups: str  # K's rule, what K = 0 ("auto") means
    lam: str  # lambda's rule, what lambda = 0 ("auto") means
    tau: str  # what tau is
    tau_basis: str  # what tau multiplies, in words
    budget_unit: str  # what N counts
    effective_budget: str | None = None  # how N becomes the kept count N_eff; None: N itself

    def budget_label(self) -> str:
        """``"N — visual tokens per 576 (the image keeps N_eff = max(round(T·N/576), 16))"``."""
        kept = f" (the image keeps N_eff = {self.effective_budget})" if self.effective_budget else ""
        return f"N — {self.budget_unit}{kept}"


LLAVA_WORDS = PresetWords(
    groups="N/4", lam="N/32", tau="λ·ρ", tau_basis="ρ", budget_unit="visual tokens per view",
)
QWEN2_VL_WORDS = PresetWords(
    groups="max(N_eff/4, 4)", lam="max(18 N_eff/T, 1)", tau="λ·s̄", tau_basis="s̄, the mean cosine similarity over i ≤ j",
    budget_unit="visual tokens per 576", effective_budget="max(round(T·N/576), 16)",
)


@dataclass(frozen=True)
class Preset:
    """The reference (LLaVA) policy; subclasses change what differs."""

    name: str = "llava"
    words: PresetWords = LLAVA_WORDS  # its rules in words, for every front end
    # N counts each view's tokens (False: N is read per a reference count of tokens, so a
    # per-view default such as a video's tokens per frame does not apply).
    budget_per_view: bool = True
    # What tau is lambda times: "rho" (mean over i < j) or "sim_mean" (i <= j, over T^2).
    threshold_of: str = "rho"
    # Reference order becomes position order when more tokens than this are kept (None: never).
    spatial_above: int | None = None
    # Where N is read per a reference count of tokens: that count, and the floor of N_eff below
    # which a view is not pruned (None: N counts each view's tokens, no floor).
    reference_tokens: int | None = None
    min_budget: int | None = None

    def effective_budget(self, budget: int, num_tokens: int) -> int:
        """Tokens the LLM receives for an image of ``num_tokens`` selectable tokens."""
        return budget

    def prunes(self, num_tokens: int) -> bool:
        """Whether a view of ``num_tokens`` selectable tokens is pruned at all (a dynamic
        budget leaves the others whole)."""
        return True

    def num_groups(self, budget: int, num_tokens: int) -> int:
        return default_groups(budget)

    def lam(self, budget: int, num_tokens: int) -> float:
        return default_lam(budget)

    def group_cap(self, budget: int) -> int:
        return group_cap(budget)

    def orders_by_position(self, kept: int) -> bool:
        """Whether the reference order becomes position order for ``kept`` kept tokens."""
        return self.spatial_above is not None and kept > self.spatial_above


@dataclass(frozen=True)
class Qwen2VLPreset(Preset):
    """SPEC section 9: the authors' Qwen2-VL variant (``budget`` is per 576 merged tokens)."""

    name: str = "qwen2-vl"
    words: PresetWords = QWEN2_VL_WORDS
    budget_per_view: bool = False
    threshold_of: str = "sim_mean"
    spatial_above: int | None = 150
    reference_tokens: int | None = 576
    min_budget: int | None = 16

    def effective_budget(self, budget: int, num_tokens: int) -> int:
        if num_tokens <= self.min_budget:
            return num_tokens  # too few tokens to prune
        return max(round(num_tokens * budget / self.reference_tokens), self.min_budget)

    def prunes(self, num_tokens: int) -> bool:
        return num_tokens > self.min_budget

    def num_groups(self, budget: int, num_tokens: int) -> int:
        return max(budget // 4, 4)

    def lam(self, budget: int, num_tokens: int) -> float:
        return max(budget / (num_tokens / 18), 1.0)


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (Preset(), Qwen2VLPreset())}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]
