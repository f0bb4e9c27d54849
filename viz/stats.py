"""The numbers behind a selection, per view and in total, as plain JSON-ready values."""

from __future__ import annotations

from prunesid.selection import Selection


def compression_ratio(unmodified_tokens: int, visual_tokens: int) -> float:
    """The compression ratio's one definition: the visual tokens the unmodified model feeds the
    LLM over those it feeds after compression (at least one, so that nothing divides by zero)."""
    return unmodified_tokens / max(visual_tokens, 1)


def compression(unmodified_tokens: int, visual_tokens: int) -> float:
    """:func:`compression_ratio` as the stats report it (two decimals)."""
    return round(compression_ratio(unmodified_tokens, visual_tokens), 2)


def selection_stats(selection: Selection, timings: dict | None = None, visual_tokens: int | None = None, unmodified_tokens: int | None = None) -> dict:
    """Per-view and total numbers of a selection. The compression ratio has one definition,
    the visual tokens the unmodified model feeds the LLM over those fed after compression
    (LLaVA-NeXT: newline tokens counted wherever they are fed); only the model knows both counts
    (``VLM.unmodified_visual_tokens``), so it is reported only when they are given."""
    views = []
    for view in range(selection.num_views):
        k = int(selection.num_groups[view])
        views.append({
            "tokens": selection.tokens_per_view,
            "budget": int(selection.budget[view]),
            "budget_clamped": bool(selection.budget_clamped[view]),
            "groups": k,
            "lam": float(selection.lam[view]),
            "rho": float(selection.rho[view]),
            "phi": float(selection.phi[view]),
            "tau": float(selection.tau[view]),
            "survivors": int(selection.survivors[view].sum()),
            "kept": int(selection.indices[view].numel()),
            "kept_per_group": selection.quotas[view, :k].tolist(),
        })
    kept = sum(view["kept"] for view in views)
    total = selection.tokens_per_view * selection.num_views
    stats = {
        "views": views,
        "tokens": total,
        "kept": kept,
        "reserved": selection.reserved,
        "dynamic": selection.dynamic,
        "phi_ref": selection.phi_ref,
        "grouping": selection.grouping,
        "timings_ms": {name: round(float(value), 2) for name, value in (timings or {}).items()},
    }
    if visual_tokens is not None and unmodified_tokens is not None:
        stats.update(visual_tokens=visual_tokens, unmodified_tokens=unmodified_tokens, compression=compression(unmodified_tokens, visual_tokens))
    return stats
