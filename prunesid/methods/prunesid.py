"""PruneSID as a press: the method's settings as one validated, hashable value.

Its defaults are :data:`prunesid.presets.DEFAULTS`, the ones ``select()`` uses, so that the
press, the function and every front end (derived from this declaration) agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from prunesid import presets
from prunesid.grouping import GROUPINGS
from prunesid.methods.base import Diagnostics, Press, PressInfo, Variant, VisionTokens, keep_cls_option
from prunesid.methods.registry import register_press
from prunesid.options import option
from prunesid.presets import DEFAULTS
from prunesid.psca import CENTERINGS, SOLVERS
from prunesid.selection import ORDERS, Selection, select, validate_settings


@register_press("prunesid")
@dataclass(frozen=True)
class PruneSID(Press):
    """PruneSID (Prune Redundancy, Preserve Essence; ICLR 2026): keep ``budget`` vision
    tokens per view by grouping the tokens into semantic concepts (PSCA), suppressing
    near-duplicates inside each concept (NMS with threshold tau = lam * rho) and sharing the
    budget between concepts.

    On LLaVA-NeXT the budget is per base view and per tile, so the paper's totals 640 / 320 /
    160 are 128 / 64 / 32. Preset ``"qwen2-vl"``: N per 576 merged tokens (an image of T
    tokens keeps N_eff = max(round(T N / 576), 16)).
    """

    groups: int | None = option(DEFAULTS.groups, "K, number of concepts; None = the preset's (N // 4)", minimum=1)
    lam: float | None = option(DEFAULTS.lam, "lambda of tau = lambda * rho; None = the preset's (N / 32)", above=0)
    grouping: str = option(
        DEFAULTS.grouping, "\"psca\" (the method) or the paper's ablations", choices=lambda: sorted(GROUPINGS),
    )
    centering: str = option(
        DEFAULTS.centering, "PSCA centring: \"token\" (the authors' code) or \"feature\" (the paper's text)",
        choices=CENTERINGS,
    )
    dynamic: bool = option(
        DEFAULTS.dynamic, "PruneSID-Dyn: each view's budget proportional to its information phi (N on average)",
        tag="dyn",
    )
    phi_ref: float | None = option(
        DEFAULTS.phi_ref, "phi that maps to exactly budget when dynamic; None = the mean phi of the views in the "
        "call (calibrate it over a set of images: prunesid calibrate, VLM.calibrate)", above=0,
    )
    keep_cls: bool = keep_cls_option(
        True, "pass the tower's CLS token through, as the authors do (it takes one of the budget's slots); ignored "
        "for towers without one (SigLIP) and families without a slot for it",
    )
    order: str = option(
        DEFAULTS.order, "output order: \"reference\" (concept by concept, as the authors' code) or \"spatial\"",
        choices=ORDERS,
    )
    solver: str = option(DEFAULTS.solver, "PSCA eigensolver: \"exact\" (reference) or a faster one", choices=SOLVERS)
    seed: int = option(DEFAULTS.seed, "seed of the random / kmeans groupings and the randomized solver", minimum=0)
    preset: str | None = option(
        None, "None = the model family's (\"llava\", or \"qwen2-vl\" for Qwen-VL), or a preset name to force",
        choices=lambda: sorted(presets.PRESETS),
    )

    info: ClassVar[PressInfo] = PressInfo(
        label="PruneSID",
        paper="ICLR 2026",
        summary="PSCA concepts, near-duplicates suppressed in each, the budget shared between concepts",
        uses=("cls_attention",),
        diagnostics=Diagnostics(
            groups=True,
            report=(("rho", "rho"), ("phi", "phi"), ("tau", "tau"), ("num_groups", "K"), ("quotas", "quotas")),
        ),
        variants=(
            Variant("prunesid-dyn", "PruneSID-Dyn", {"dynamic": True}, "budget ∝ the image's information φ, N on average"),
        ),
        order=0,
    )

    def __post_init__(self) -> None:
        validate_settings(  # select()'s own checks first: the same messages as select()
            budget=self.budget, reserved=0, groups=self.groups, lam=self.lam, grouping=self.grouping,
            centering=self.centering, dynamic=self.dynamic, phi_ref=self.phi_ref, seed=self.seed,
            order=self.order, solver=self.solver, preset=DEFAULTS.preset if self.preset is None else self.preset,
        )
        super().__post_init__()

    @property
    def budget_is_fixed(self) -> bool:
        return not self.dynamic

    @property
    def needs_calibration(self) -> bool:
        return self.dynamic and self.phi_ref is None

    def calibrated(self, reference: float) -> "PruneSID":
        return dataclasses.replace(self, phi_ref=reference) if self.dynamic else self

    def selection_preset(self, family_preset: str) -> str:
        return self.preset or family_preset

    def compress(self, tokens: VisionTokens) -> Selection:
        return select(
            tokens.features,
            self.budget,
            importance=tokens.importance,
            valid=tokens.valid,
            reserved=self.reserved(tokens),
            reserved_fed=tokens.cls_fed,
            preset=self.selection_preset(tokens.preset),
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
