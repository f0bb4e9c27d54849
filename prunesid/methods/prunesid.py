"""PruneSID as a press: the method's settings as one validated, hashable value."""

from __future__ import annotations

from dataclasses import dataclass

from prunesid.methods.base import Press, VisionTokens, register_press
from prunesid.selection import Selection, select, validate_settings


@register_press("prunesid")
@dataclass(frozen=True)
class PruneSID(Press):
    """PruneSID (Prune Redundancy, Preserve Essence; ICLR 2026): keep ``budget`` vision
    tokens per view by grouping the tokens into semantic concepts (PSCA), suppressing
    near-duplicates inside each concept (NMS with threshold tau = lam * rho) and sharing the
    budget between concepts.

    Args:
        budget: N, visual tokens the language model receives per view (LLaVA-NeXT: per base
            view and per tile, so the paper's totals 640 / 320 / 160 are 128 / 64 / 32), the
            CLS included when ``keep_cls`` passes it through. Preset ``"qwen2-vl"``: N per 576
            merged tokens (an image of T tokens keeps N_eff = max(round(T N / 576), 16)).
        groups: K, number of concepts; ``None`` = the preset's (N // 4).
        lam: lambda of tau = lambda * rho; ``None`` = the preset's (N / 32).
        grouping: ``"psca"`` (the method) or the ablations ``"kmeans"`` / ``"random"``.
        centering: PSCA centring, ``"token"`` (authors' code) or ``"feature"`` (paper text).
        dynamic: PruneSID-Dyn, budget proportional to each view's information phi.
        phi_ref: phi that maps to exactly ``budget`` when ``dynamic``; ``None`` = the mean
            phi of the views in the call (calibrate it with ``VLM.calibrate``).
        keep_cls: pass the tower's CLS token through, as the authors do (ignored for towers
            without one, e.g. SigLIP, and families without a slot for it). It takes one of
            the ``budget`` slots.
        order: ``"reference"`` (concept by concept, as the authors' code) or ``"spatial"``.
        solver: PSCA eigensolver, ``"exact"`` (reference) or a faster one (see psca.py).
        seed: seed of the random / kmeans groupings and the randomized solver.
        preset: ``None`` (the model family's: ``"llava"``, or ``"qwen2-vl"`` for Qwen-VL) or
            a preset name to force.
    """

    budget: int = 64
    groups: int | None = None
    lam: float | None = None
    grouping: str = "psca"
    centering: str = "token"
    dynamic: bool = False
    phi_ref: float | None = None
    keep_cls: bool = True
    order: str = "reference"
    solver: str = "exact"
    seed: int = 0
    preset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.keep_cls, bool):
            raise TypeError(f"keep_cls must be True or False, got {self.keep_cls!r}")
        validate_settings(
            budget=self.budget, reserved=0, groups=self.groups, lam=self.lam, grouping=self.grouping,
            centering=self.centering, dynamic=self.dynamic, phi_ref=self.phi_ref, seed=self.seed,
            order=self.order, solver=self.solver, preset="llava" if self.preset is None else self.preset,
        )
        if self.keep_cls and self.budget == 1:
            raise ValueError("budget must be at least 2 with keep_cls=True (the CLS token takes one slot), got 1")

    def compress(self, tokens: VisionTokens) -> Selection:
        return select(
            tokens.features,
            self.budget,
            importance=tokens.importance,
            valid=tokens.valid,
            reserved=self.reserved(tokens),
            preset=self.preset or tokens.preset,
            groups=self.groups,
            lam=self.lam,
            grouping=self.grouping,
            centering=self.centering,
            dynamic=self.dynamic,
            phi_ref=self.phi_ref,
            seed=self.seed,
            order=self.order,
            solver=self.solver,
        )
