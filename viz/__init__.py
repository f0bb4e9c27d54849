"""Pictures of a PruneSID selection, drawn on the user's own image.

Knows a :class:`prunesid.Selection`, the views' :class:`prunesid.PatchGrid` and a PIL image;
nothing about models. Returns PIL images.
"""

from viz.overlay import compare, render_all, render_groups, render_kept, render_survivors, save_panel
from viz.quotas import render_quotas
from viz.stats import selection_stats

__all__ = ["compare", "render_all", "render_groups", "render_kept", "render_quotas", "render_survivors", "save_panel", "selection_stats"]
