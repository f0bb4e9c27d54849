"""Every figure the page shows about one selection, computed once, in the family's words.

The stats tables of images and clips (demo/stats.py), and the processor's legend under the
overlays, are written from :func:`figures` alone, the methods' rows from
:func:`method_figures`: kept tokens per view, CLS tokens, the family's extra tokens
(newlines), tokens fed to the LLM, the budget read through the preset (N_eff and its floor),
K, lambda, tau, the compression ratio (viz/stats.py's definition) and each view's time in a
clip. All of them
come from the library's :class:`~prunesid.Selection`, the tokens the model actually feeds
(``VLM.visual_features``) and the family's layout (``extra_tokens``, ``unmodified_tokens``),
so that no two places on the page can count differently.
"""

from __future__ import annotations

import re

from prunesid.presets import get_preset
from viz.overlay import overview_view
from viz.stats import compression, compression_ratio


def figures(vlm, encoded, selection, press, visual_tokens: int, timestamps: list[float] | None = None) -> dict:
    """The numbers of one image's (or clip's) selection; see the module docstring."""
    unmodified = vlm.unmodified_visual_tokens(encoded)  # the reference of every compression ratio
    views = selection.num_views
    grids = encoded.grids
    modality = getattr(encoded, "modality", "image")
    layout = vlm.family.layout
    kept = [int(index.numel()) for index in selection.indices]
    cls_per_view = int(selection.reserved)
    extra = visual_tokens - sum(kept) - cls_per_view * views  # tokens fed besides the views' own
    selectable = [int(n) for n in layout.selectable_tokens(encoded.image_size, modality)]
    scope = overview_view(grids) if views > 1 and modality == "image" else 0
    preset = selection.preset
    requested = [int(n) for n in selection.requested_budget.tolist()]
    used = [int(n) for n in selection.budget.tolist()]
    return {
        "views": views,
        "view_word": view_word(modality, grids),
        "scope_view": scope,  # the view the per-view rows (K, lambda, tau, survivors, quotas) describe
        "tokens_per_view": int(selection.tokens_per_view),
        "selectable": selectable,
        "kept_per_view": kept,  # tokens the selection kept in each view (CLS not included)
        "patches_kept": sum(kept),
        "cls_per_view": cls_per_view,
        "cls_fed": cls_per_view * views,
        "extra_fed": extra,
        "extra_name": "newline tokens" if extra else "",
        "fed": visual_tokens,
        "unmodified": unmodified,
        "compression": compression(unmodified, visual_tokens),
        "compression_text": compression_text(unmodified, visual_tokens),
        "budget_text": budget_text(preset, press, requested, used, kept, selectable, cls_per_view, selection),
        "lam_exact": float(selection.lam[scope]),
        "tau_text": tau_text(preset, float(selection.lam[scope]), float(selection.tau[scope])),
        "times": [round(float(t), 3) for t in timestamps] if timestamps is not None else None,
    }


def fed_stats(numbers: dict, selection, press, timings: dict) -> dict:
    """The stats' entries every section shows the same way: what the LLM was fed, against
    what the unmodified model feeds (the compression), the grouping and the timings."""
    return {
        "reserved": selection.reserved,
        "visual_tokens": numbers["fed"],
        "visual_tokens_uncompressed": numbers["unmodified"],
        "compression": numbers["compression"],  # what the unmodified model feeds the LLM over what the compressed one feeds
        "grouping": press.grouping,
        "timings_ms": {name: round(value, 1) for name, value in timings.items()},
    }


def method_figures(vlm, encoded, result) -> dict:
    """The counts of one method's result (any press, merged tokens included), from the same
    sources as :func:`figures`: the tokens the model feeds and the family's unmodified count."""
    visual_tokens = int(vlm.visual_features(encoded, result).shape[0])
    unmodified = vlm.unmodified_visual_tokens(encoded)
    return {
        "views": encoded.num_views,
        "kept": sum(int(index.numel()) for index in result.indices),
        "merged": 0 if result.merged is None else sum(int(m.shape[0]) for m in result.merged),
        "reserved": result.reserved,
        "visual_tokens": visual_tokens,
        "visual_tokens_uncompressed": unmodified,
        "compression": compression(unmodified, visual_tokens),
    }


def view_word(modality: str, grids) -> str:
    """What one view is called: "frame", "temporal group" (Qwen-VL pairs frames), "view"."""
    if modality == "video":
        return "temporal group" if grids and grids[0].label.startswith("frames ") else "frame"
    return "view"


def compression_text(unmodified: int, fed: int) -> str:
    """``"2880 / 320 = 9x"``; never "1.0x" for a run that feeds more than the unmodified one."""
    ratio = compression_ratio(unmodified, fed)
    shown = f"{ratio:.2f}".rstrip("0").rstrip(".")
    if fed > unmodified:
        return f"{shown}x: {fed - unmodified} more than the unmodified model feeds"
    if fed == unmodified:
        return "1x: as many as the unmodified model feeds (no compression)"
    if shown == "1":
        shown = f"{ratio:.3f}"
    return f"{shown}x"


def budget_text(preset: str, press, requested: list[int], used: list[int], kept: list[int], selectable: list[int], cls: int, selection) -> str:
    """The budget row: N, N' when dynamic, N_eff with its rule and floor, and what CLS takes."""
    budget = press.budget
    parts = []
    rules = get_preset(preset)
    if not rules.budget_per_view:  # N is read per a reference count of tokens: N_eff
        parts.append(effective_budget_text(rules, press, used, selection.tokens_per_view))
        if press.dynamic:  # the views share their N_eff by φ (prunesid/selection/dynamic.py): N'_eff, in tokens kept
            total = f", {sum(used)} in all" if len(used) > 1 else ""
            parts.append(f"dynamic N'_eff = {uniform(used)} (N'_eff ∝ φ; φ_ref {selection.phi_ref:.3f}{total})")
    else:
        parts.append(f"{budget}" + (" per view" if len(used) > 1 else ""))
        if press.dynamic:
            total = f", {sum(used)} in all" if len(used) > 1 else ""
            parts.append(f"dynamic N' = {uniform(requested)} (N' ∝ φ; φ_ref {selection.phi_ref:.3f}{total})")
    clamped = [bool(flag) for flag in selection.budget_clamped.tolist()]
    if any(clamped):
        unit = "N" if rules.budget_per_view else "N_eff"
        parts.append(f"N' clamped to [{unit}/2, 2 {unit}] and to what the view holds")
    if cls:
        word = "token" if set(kept) == {1} else "tokens"
        parts.append(f"N counts the CLS token: each view feeds {uniform(kept)} {word} + CLS")
    short = [s for n, k, s in zip(used, kept, selectable) if n - cls > k]
    if short:
        parts.append(f"a view holds only {uniform(short)} tokens to keep")
    return "; ".join(parts)


def uniform(values: list) -> str:
    """One value when all are the same, else all of them."""
    return str(values[0]) if len(set(values)) == 1 else ", ".join(map(str, values))


def effective_budget_text(preset, press, used: list[int], tokens: int) -> str:
    """``"64 per 576 tokens → N_eff = max(round(T·N/576), 16) = max(round(1296·64/576), 16) = 144"``:
    the preset's rule in its words, then with this view's T and N written in, then its value;
    the floor of the rule and a view too small to prune say so."""
    budget = press.budget
    rule = preset.words.effective_budget
    reference, floor = preset.reference_tokens, preset.min_budget
    # Without dynamic each view keeps its N_eff (shown as kept); with it, N_eff is the share basis.
    n_eff = uniform(used) if not press.dynamic else preset.effective_budget(budget, tokens)
    written = re.sub(r"\bN\b", str(budget), re.sub(r"\bT\b", str(tokens), rule))
    text = f"{budget} per {reference} tokens → N_eff = {rule} = {written} = {n_eff}"
    if preset.prunes(tokens) and round(tokens * budget / reference) < floor:
        text += f" (the floor of {floor} applies)"
    if not preset.prunes(tokens):
        text += f"; T ≤ {floor}: nothing is pruned"
    return text


def tau_text(preset: str, lam: float, tau: float) -> str:
    """``"λ × ρ = 18.03125 × 0.7971 = 14.3922"``, lambda written exactly (no "18 × ... ")."""
    basis = tau / lam if lam else 0.0
    text = f"{exact(lam)} × {basis:.4f} = {tau:.4f}"
    if tau >= 1:
        text += " (≥ 1: no two tokens are that similar, so the NMS suppresses nothing)"
    return text


def exact(value: float) -> str:
    """A float as short as it can be written without losing digits that matter (18.03125, 2, 0.25)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def legend(image_size: tuple[int, int], grids) -> str:
    """What the overlays show of this family's processor, from the views' geometry: the
    overview and the tiles, a center crop (hatched), padding (grey). Nothing that is not there."""
    width, height = image_size
    lines = []
    if len(grids) > 1:
        overview = overview_view(grids)
        others = len(grids) - 1
        lines.append(
            f"Left: the {grids[overview].label} view (the whole image at low resolution); right: the other "
            f"{others} views ({', '.join(grid.label for index, grid in enumerate(grids) if index != overview)}), each "
            "compressed on its own."
        )
    boxes = [grid.box for grid in grids]
    covered = (min(b[0] for b in boxes) <= 0.5 and min(b[1] for b in boxes) <= 0.5
               and max(b[2] for b in boxes) >= width - 0.5 and max(b[3] for b in boxes) >= height - 0.5)
    if not covered:
        lines.append("Hatched: the part of the image the processor crops away (the model never sees it).")
    if any(b[0] < -0.5 or b[1] < -0.5 or b[2] > width + 0.5 or b[3] > height + 0.5 for b in boxes):
        lines.append("Grey: padding the processor adds around the image (it takes no part in the selection).")
    return " ".join(lines)

