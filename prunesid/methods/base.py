"""The press interface: what every compression method implements and declares.

A press is a method's settings as a small frozen dataclass (hashable: it doubles as a cache
key). Its one job is :meth:`Press.compress`: a batch of encoded views in
(:class:`VisionTokens`), a :class:`prunesid.Compression` out. It knows nothing of models:
the VLM adapters build the VisionTokens and lay the result out for the language model.

A press also *declares* what the front ends need, so that none of them names a method:

- each field is an option made with :func:`prunesid.options.option`: its default, help text
  and allowed values (``choices``, ``minimum``, ``above``); its type is the field's
  annotation. The press validates every option against this declaration when it is built.
- ``info``, a :class:`PressInfo`: the label people know the method by, its paper, the inputs
  it needs (:data:`INPUTS`), the variants menus list (PruneSID-Dyn) and what its
  diagnostics look like (:class:`Diagnostics`).

The CLI's flags, the demo's method switch, lmms-eval's ``--model_args`` and the overlays are
all derived from these declarations (``prunesid.methods.registry``).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from prunesid.compression import Compression
from prunesid.options import OPTION, Option, check_declared, option  # noqa: F401  (re-exported: presses declare with them)
from prunesid.presets import DEFAULTS

# Inputs a press can ask of the model, and how they are described to a user.
INPUTS = {
    "cls_attention": "the CLS token's attention (vision towers with a CLS token, e.g. CLIP)",
    "attention_keys": "the feature layer's attention keys",
    "projector": "the family's projector into the language model's input space",
    "patch_grid": "each view's patch grid (rows, columns)",
}


@dataclass
class VisionTokens:
    """A batch of B views (images, tiles or frames) as a press sees them."""

    features: torch.Tensor  # [B, T, D] tokens a press chooses from (no CLS)
    importance: torch.Tensor | None = None  # [B, T] CLS attention summed over heads, None without CLS
    valid: torch.Tensor | None = None  # [B, T] bool: tokens that may be kept (None: all)
    cls_slot: bool = False  # the tower has a CLS token and the family can pass it through
    cls_fed: bool = True  # the unmodified model feeds that CLS (LLaVA-1.5 does not): caps a dynamic budget
    preset: str = "llava"  # the family's selection preset (presets.py)
    grid_shapes: list[tuple[int, int]] | None = None  # per view (rows, cols): token i sits at divmod(i, cols)
    keys: torch.Tensor | None = None  # [B, T, d] the feature layer's attention keys, mean over heads
    project: Callable[[torch.Tensor], torch.Tensor] | None = None  # [n, D] -> [n, H]: into the LLM's input space

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    def available(self, needed: str) -> bool:
        """Whether these tokens carry the input ``needed`` (a key of :data:`INPUTS`)."""
        present = {
            "cls_attention": self.importance is not None,
            "attention_keys": self.keys is not None,
            "projector": self.project is not None,
            "patch_grid": self.grid_shapes is not None,
        }
        return present[needed]


def keep_cls_option(default: bool, help: str) -> bool:
    """The ``keep_cls`` option every press has, with a method's own default and reason
    (spelled ``--cls`` / ``--no-cls`` too, tagged "CLS" in result tables)."""
    return option(default, help, aliases=("cls",), tag="CLS")


@dataclass(frozen=True)
class Variant:
    """A named setting of a press that menus list as a method of its own (PruneSID-Dyn)."""

    key: str  # machine name, e.g. a row of the evaluation grid: "prunesid-dyn"
    label: str  # how people call it: "PruneSID-Dyn"
    settings: dict  # the options it fixes, e.g. {"dynamic": True}
    summary: str


@dataclass(frozen=True)
class Diagnostics:
    """What a press's results hold beyond the kept tokens, for the overlays and reports."""

    groups: bool = False  # groups, NMS survivors and per-group quotas (viz.render_all, frame strips)
    anchors: str | None = None  # the result field marking the token each merged token was built on
    report: tuple[tuple[str, str], ...] = ()  # per-view numbers printed by the CLI: (key of to_dict, label)


@dataclass(frozen=True)
class PressInfo:
    """What the front ends say and check about a method."""

    label: str  # the name people know it by: menus, tables, captions
    paper: str  # the citation ("" for a baseline of no paper)
    summary: str  # what it keeps, in a few words
    requires: tuple[str, ...] = ()  # inputs (INPUTS) it cannot run without
    uses: tuple[str, ...] = ()  # inputs it uses when the model has them
    diagnostics: Diagnostics = Diagnostics()
    variants: tuple[Variant, ...] = ()
    order: int = 50  # place in menus (lower first); the first press is the default method

    def about(self) -> str:
        """``"label (paper): summary"``: one line for a menu or a table."""
        return f"{self.label}{f' ({self.paper})' if self.paper else ''}: {self.summary}"


@dataclass(frozen=True)
class Press(ABC):
    """Base of every method: a frozen dataclass whose fields are options (:func:`option`).

    Every press has a budget N and may pass the tower's CLS token through; its own options
    follow. Subclasses declare ``info`` and are registered with
    ``prunesid.methods.registry.register_press``.
    """

    budget: int = option(
        DEFAULTS.budget, "N, visual tokens the language model receives per view (per base view and tile on LLaVA-NeXT, per frame "
        "for a video), a passed-through CLS included; preset \"qwen2-vl\": N per 576 merged tokens", minimum=1,
    )
    keep_cls: bool = keep_cls_option(
        True, "pass the tower's CLS token through (it takes one of the budget's slots); ignored where the tower "
        "or the family has no CLS slot",
    )

    name: ClassVar[str] = "press"
    info: ClassVar[PressInfo]

    def __post_init__(self) -> None:
        check_options(self)

    @abstractmethod
    def compress(self, tokens: VisionTokens) -> Compression:
        """Decide, for every view of ``tokens``, what the language model receives."""

    def reserved(self, tokens: VisionTokens) -> int:
        """Budget slots taken by tokens passed through untouched (the CLS, where kept)."""
        return int(self.keep_cls and tokens.cls_slot)

    def selection_preset(self, family_preset: str) -> str:
        """The preset (presets.py) this press reads its budget through on a family whose own
        is ``family_preset`` (a press may let the user force another)."""
        return family_preset

    def settings(self) -> dict:
        """Every option's value, by name (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # A budget that varies per image (PruneSID-Dyn) is N on average over a calibration set.
    @property
    def budget_is_fixed(self) -> bool:
        """True when every view receives exactly N tokens (``budget``)."""
        return True

    @property
    def needs_calibration(self) -> bool:
        """True when the press needs :meth:`calibrated` before a run compares images fairly."""
        return False

    def calibrated(self, reference: float) -> "Press":
        """The press with its reference measured on a calibration set (see PruneSID)."""
        return self

    def missing_inputs(self, tokens: VisionTokens) -> list[str]:
        """Descriptions of the required inputs these tokens lack (empty: the press can run)."""
        return [INPUTS[name] for name in self.info.requires if not tokens.available(name)]


def check_press(press, optional: bool = False) -> None:
    """TypeError unless ``press`` is a press (or None where ``optional``): the one check
    every entry point that takes a press makes."""
    if optional and press is None:
        return
    if not isinstance(press, Press):
        nullable = " or None" if optional else ""
        raise TypeError(f"press must be a prunesid press (e.g. prunesid.PruneSID){nullable}, got {type(press).__name__}")


def check_options(press: Press) -> None:
    """Each option's value against its declaration; the error names the option."""
    if isinstance(press.budget, bool) or not isinstance(press.budget, int) or press.budget <= 0:
        raise ValueError(f"budget must be a positive integer (visual tokens per view), got {press.budget!r}")
    if press.keep_cls is True and press.budget == 1:
        raise ValueError("budget must be at least 2 with keep_cls=True (the CLS token takes one slot), got 1")
    check_declared(press)
