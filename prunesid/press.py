"""PruneSID: the method's settings as one validated, hashable value.

A press is a configuration, not model code: the VLM adapters read it and call
:func:`prunesid.select`. Being frozen, it doubles as a cache key for selections.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunesid.selection import validate_settings


@dataclass(frozen=True)
class PruneSID:
    """PruneSID (ICLR 2026, "Prune Redundancy, Preserve Essence"): keep ``budget`` vision
    tokens per image (per view for LLaVA-NeXT) by grouping the patches into semantic
    concepts (PSCA), suppressing near-duplicates inside each concept (NMS with threshold
    tau = lam * rho) and sharing the budget between concepts.

    Args:
        budget: N, visual tokens the language model receives per image (LLaVA-NeXT: per view,
            so the paper's totals 640 / 320 / 160 are 128 / 64 / 32), the CLS included when
            ``keep_cls`` passes it through.
        groups: K, number of concepts; ``None`` = budget // 4.
        lam: lambda of tau = lambda * rho; ``None`` = budget / 32.
        grouping: ``"psca"`` (the method) or the ablations ``"kmeans"`` / ``"random"``.
        centering: PSCA centring, ``"token"`` (authors' code) or ``"feature"`` (paper text).
        dynamic: PruneSID-Dyn, budget proportional to each image's information phi.
        phi_ref: phi that maps to exactly ``budget`` when ``dynamic``; ``None`` = the mean
            phi of the images in the call (calibrate it with ``VLM.calibrate``).
        keep_cls: pass the tower's CLS token through, as the authors do (ignored for towers
            without one, e.g. SigLIP). It takes one of the ``budget`` slots.
        order: ``"reference"`` (concept by concept, as the authors' code) or ``"spatial"``.
        solver: PSCA eigensolver, ``"exact"`` (reference) or ``"randomized"`` (faster).
        seed: seed of the random / kmeans groupings and the randomized solver.
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

    def __post_init__(self) -> None:
        if not isinstance(self.keep_cls, bool):
            raise TypeError(f"keep_cls must be True or False, got {self.keep_cls!r}")
        reserved = 1 if self.keep_cls and self.budget != 1 else 0
        validate_settings(
            self.budget, reserved, self.groups, self.lam, self.grouping, self.centering,
            self.dynamic, self.phi_ref, self.seed, self.order, self.solver,
        )
        if self.keep_cls and self.budget == 1:
            raise ValueError("budget must be at least 2 with keep_cls=True (the CLS token takes one slot), got 1")

    def select_kwargs(self, reserved: int) -> dict:
        """Keyword arguments of :func:`prunesid.select` for a tower that passes ``reserved`` tokens through."""
        return {
            "reserved": reserved, "groups": self.groups, "lam": self.lam, "grouping": self.grouping,
            "centering": self.centering, "dynamic": self.dynamic, "phi_ref": self.phi_ref,
            "seed": self.seed, "order": self.order, "solver": self.solver,
        }
