"""Why was this patch kept or dropped? The words and the place on the picture for a decision
that the library computes (:func:`prunesid.selection.explain`: kept, suppressed by which
survivor, quota full, zero importance, or no part taken).

:func:`locate` maps a pixel of an overlay drawn by :mod:`viz.overlay` (groups, survivors or
kept: one layout) back to the view and patch under it; :func:`explain_patch` words the
decision about that patch, with its row and column on the view's grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image

from prunesid.geometry import PatchGrid
from prunesid.selection import Selection, TokenDecision, explain
from viz.overlay import CAPTION_HEIGHT, GAP, canvases


@dataclass
class Location:
    """What lies under one pixel of an overlay."""

    x: int
    y: int
    view: int | None = None
    patch: int | None = None
    where: str = "patch"  # "patch", "cropped" (on the image, in no view), "outside" (caption, gap, beyond)

    def markdown(self) -> str:
        if self.where == "cropped":
            return (
                f"Pixel ({self.x}, {self.y}) lies on the part of the image the processor's center crop cut "
                "away: the model never sees it, so no patch there takes part."
            )
        if self.where == "outside":
            return f"Pixel ({self.x}, {self.y}) is not on a patch: click inside the image."
        return f"Pixel ({self.x}, {self.y}): view {self.view}, patch {self.patch}."

    def to_dict(self) -> dict:
        return asdict(self)


def locate(image: Image.Image, grids: list[PatchGrid], x: int, y: int) -> Location:
    """The view and patch drawn at pixel (x, y) of an overlay of ``image`` (as drawn by
    :func:`viz.render_all`: one panel, or base view and tiles side by side under captions)."""
    panels = canvases(image, grids)
    if len(panels) == 1 and not panels[0][0]:
        placed = [(0, 0, panels[0][1])]
    else:
        placed, left = [], 0
        for _, canvas in panels:
            placed.append((left, CAPTION_HEIGHT, canvas))
            left += canvas.view.shape[1] + GAP
    for left, top, canvas in placed:
        height, width = canvas.view.shape
        if left <= x < left + width and top <= y < top + height:
            hit = canvas.patch_at(x - left, y - top)
            if hit is not None:
                return Location(x, y, view=hit[0], patch=hit[1])
            where = "cropped" if canvas.on_image[y - top, x - left] else "outside"
            return Location(x, y, where=where)
    return Location(x, y, where="outside")


def overlay_size(image: Image.Image, grids: list[PatchGrid]) -> tuple[int, int]:
    """(width, height) of the overlays :func:`locate` reads, to check a click's frame."""
    panels = canvases(image, grids)
    if len(panels) == 1 and not panels[0][0]:
        height, width = panels[0][1].view.shape
        return width, height
    width = sum(canvas.view.shape[1] for _, canvas in panels) + GAP * (len(panels) - 1)
    return width, max(canvas.view.shape[0] for _, canvas in panels) + CAPTION_HEIGHT


class Explanation:
    """A :class:`prunesid.selection.TokenDecision` placed on its view's patch grid for the page:
    the decision itself (``decision``; its fields read through, its ``token`` as ``patch``),
    the view's name, and the row and column of the patch and of its suppressor."""

    PLACEMENT = ("view_label", "patch", "row", "col")  # where to_dict puts them: after "view"

    def __init__(
        self, decision: TokenDecision | None = None, *, view_label: str, row: int, col: int,
        suppressor_row: int | None = None, suppressor_col: int | None = None, patch: int | None = None, **fields,
    ):
        """``decision``, or its fields by name (``patch`` for its ``token``)."""
        self.decision = decision if decision is not None else TokenDecision(token=patch, **fields)
        self.view_label, self.row, self.col = view_label, row, col
        self.suppressor_row, self.suppressor_col = suppressor_row, suppressor_col

    @classmethod
    def of(cls, decision: TokenDecision, view_label: str, cols: int) -> Explanation:
        row, col = divmod(decision.token, cols)
        suppressor_row, suppressor_col = divmod(decision.suppressor, cols) if decision.suppressor is not None else (None, None)
        return cls(decision, view_label=view_label, row=row, col=col, suppressor_row=suppressor_row, suppressor_col=suppressor_col)

    @property
    def patch(self) -> int:
        return self.decision.token

    def __getattr__(self, name: str):
        if name == "decision":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.decision, name)

    def to_dict(self) -> dict:
        """The decision's numbers with the placement, patch indices for token indices."""
        numbers = {key: value for key, value in self.decision.to_dict().items() if key != "token"}
        placed = {"view": numbers.pop("view"), **{name: getattr(self, name) for name in self.PLACEMENT}}
        suppressor = {"suppressor_row": self.suppressor_row, "suppressor_col": self.suppressor_col}
        ordered = {}
        for key, value in numbers.items():
            ordered[key] = value
            if key == "suppressor":
                ordered.update(suppressor)
        return {**placed, **ordered}

    def markdown(self) -> str:
        head = f"**Patch {self.patch}** (row {self.row}, column {self.col}, {self.view_label})"
        if self.status == "excluded":
            return f"{head}: **took no part**. It lies on the padding around the image in this view, so it was never a candidate."
        group = (
            f"Group {self.group} of {self.num_groups} ({self.group_size} {'patch' if self.group_size == 1 else 'patches'}); importance {self.importance:.4g}, "
            f"rank {self.importance_rank} of {self.group_size} in its group."
        )
        if self.status == "kept":
            if self.keep_all:
                why = "The budget covers every patch of the view, so all are kept."
            elif self.survivor_rank is None:
                why = (
                    f"The NMS suppressed it, but its group keeps {_patches(self.group_quota)}, more than its "
                    f"{_count(self.group_survivors, 'survivor')}, so the group's most important suppressed patches fill the rest."
                )
            else:
                why = (
                    f"Survivor #{self.survivor_rank} of the group's {_count(self.group_survivors, 'NMS survivor')}; "
                    f"the group keeps {_patches(self.group_quota)}: {_quota_words(self.group_quota, self.group_survivors)}."
                )
            return f"{head}: **kept**.\n\n- {group}\n- {why}"
        if self.status == "suppressed":
            relation = ">" if self.similarity > self.tau else "≈ (within float rounding of)"
            why = (
                f"Suppressed by patch {self.suppressor} (row {self.suppressor_row}, column {self.suppressor_col}), a more "
                f"important survivor of the same group: cosine similarity {self.similarity:.4f} {relation} τ = {self.tau:.4f}."
            )
            if self.group_quota > self.group_survivors:
                why += (
                    f" Its group keeps {_patches(self.group_quota)}: {_quota_words(self.group_quota, self.group_survivors)}, "
                    f"not this one."
                )
            return f"{head}: **dropped by NMS**.\n\n- {group}\n- {why}"
        if self.status == "quota_full":
            why = (
                f"It survived the NMS (survivor #{self.survivor_rank} of the group's {self.group_survivors}), but the group "
                f"keeps {_patches(self.group_quota)}: {_quota_words(self.group_quota, self.group_survivors)}."
            )
            return f"{head}: **dropped: quota full**.\n\n- {group}\n- {why}"
        why = "Its importance is 0: the NMS never takes such a patch, and nothing needed to suppress it."
        return f"{head}: **dropped: zero importance**.\n\n- {group}\n- {why}"


def explain_patch(selection: Selection, features: torch.Tensor, view: int, patch: int, grids: list[PatchGrid] | None = None) -> Explanation:
    """Why ``patch`` of ``view`` was kept or dropped, worded for the page.

    ``features``: the patch tokens the selection chose from, ``[V, T, D]`` (or ``[T, D]``
    for the one view asked about), in the selection's index space. ``grids`` place the
    patch on its view (a square grid when None).
    """
    if not 0 <= view < selection.num_views:
        raise ValueError(f"view must be in [0, {selection.num_views - 1}], got {view}")
    if not 0 <= patch < selection.tokens_per_view:
        raise ValueError(f"patch must be in [0, {selection.tokens_per_view - 1}], got {patch}")
    decision = explain(selection, features, view, patch)
    grid = grids[view] if grids is not None else None
    cols = grid.cols if grid is not None else int(round(selection.tokens_per_view ** 0.5))
    label = grid.label if grid is not None else f"view {view}"
    return Explanation.of(decision, _view_label(label, view), cols)


def _count(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _patches(number: int) -> str:
    return _count(number, "patch").replace("patchs", "patches")


def _quota_words(quota: int, survivors: int) -> str:
    """Which patches a group's quota takes, in NMS order: never "4 of 2 survivors"."""
    if quota < survivors:
        first = "the first" if quota == 1 else f"the first {quota}"
        return f"{first} of its {survivors} survivors in NMS order"
    if quota == survivors:
        return "its one survivor" if survivors == 1 else f"all {survivors} of its survivors"
    extra = quota - survivors
    suppressed = "the most important suppressed patch" if extra == 1 else f"the {extra} most important suppressed patches"
    return f"{'its one survivor' if survivors == 1 else f'all {survivors} of its survivors'}, then {suppressed}"


def _view_label(label: str, view: int) -> str:
    if label in ("image", ""):
        return "the image" if view == 0 else f"view {view}"
    return f"view {view}: {label}"
