"""The numbers behind a selection, per view and in total, as plain JSON-ready values."""

from __future__ import annotations

from prunesid.selection import Selection


def selection_stats(selection: Selection, timings: dict | None = None) -> dict:
    views = []
    for view in range(selection.num_images):
        k = int(selection.num_groups[view])
        views.append({
            "tokens": selection.num_tokens,
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
    total = selection.num_tokens * selection.num_images
    return {
        "views": views,
        "tokens": total,
        "kept": kept,
        "reserved": selection.reserved,
        "compression": round(total / max(kept + selection.reserved * selection.num_images, 1), 2),
        "dynamic": selection.dynamic,
        "phi_ref": selection.phi_ref,
        "grouping": selection.grouping,
        "timings_ms": {name: round(float(value), 2) for name, value in (timings or {}).items()},
    }
