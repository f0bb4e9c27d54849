"""The stats the page shows of one selection, on top of viz/stats.py and demo/figures.py
(which computes each number once): the image's and the clip's stats dicts, and their tables
in the words of the model's preset and family.
"""

from __future__ import annotations

import viz
from demo.figures import exact, fed_stats, figures, legend
from prunesid import PruneSID
from prunesid.presets import get_preset
from viz.frames import frames_per_view


def image_stats(vlm, encoded, selection, press: PruneSID, timings: dict) -> dict:
    """The stats dict of one selection: the per-view rows describe the overview view (the
    whole image; demo/figures.py), every count comes from demo/figures.py."""
    visual_tokens = len(vlm.visual_features(encoded, selection))
    numbers = figures(vlm, encoded, selection, press, visual_tokens)
    per_view = viz.selection_stats(selection, timings)  # no compression: demo/figures.py gives it
    scope = numbers["scope_view"]
    first = selection.to_dict(scope)
    return {
        "model": vlm.name,
        "tokens": encoded.num_tokens,
        "views": encoded.num_views,
        "budget": press.budget,
        "budget_used": [int(n) for n in selection.budget.tolist()],
        "budget_requested": [int(n) for n in selection.requested_budget.tolist()],
        "preset": selection.preset,
        "first_view": encoded.grids[scope].label if encoded.num_views > 1 else "",
        "scope_view": scope,
        "dynamic": press.dynamic,
        "phi_ref": selection.phi_ref,
        "groups": first["num_groups"],
        "groups_auto": press.groups is None,
        "lam": first["lam"],
        "lam_auto": press.lam is None,
        "rho": first["rho"],
        "phi": first["phi"],
        "tau": first["tau"],
        "kept": numbers["patches_kept"],
        "kept_per_group": first["quotas"],
        "survivors": first["survivors"],
        **fed_stats(numbers, selection, press, timings),
        "per_view": per_view,
        "figures": numbers,
        "legend": legend(encoded.image_size, encoded.grids),
    }


def clip_stats(vlm, encoded, selection, press: PruneSID, timings: dict) -> dict:
    """The clip's stats: every count from demo/figures.py; each view's time is the time of
    the frame the strip shows for it (Qwen-VL: the first frame of each pair)."""
    clip = encoded.video
    visual_tokens = len(vlm.visual_features(encoded, selection))
    _, times = frames_per_view(list(clip.frames), list(clip.timestamps), selection.num_views)
    step = -(-len(clip.frames) // selection.num_views)  # frames per view (frames_per_view's)
    numbers = figures(vlm, encoded, selection, press, visual_tokens, timestamps=times)
    per_frame = []
    for frame in range(selection.num_views):
        k = int(selection.num_groups[frame])
        per_frame.append({
            "frame": frame + 1,
            "label": encoded.grids[frame].label,
            "clip_frame": int(clip.indices[frame * step]),
            "time_s": numbers["times"][frame],
            "budget": int(selection.budget[frame]),
            "budget_requested": int(selection.requested_budget[frame]),
            "budget_clamped": bool(selection.budget_clamped[frame]),
            "kept": int(selection.indices[frame].numel()),
            "rho": float(selection.rho[frame]),
            "phi": float(selection.phi[frame]),
            "lam": float(selection.lam[frame]),
            "tau": float(selection.tau[frame]),
            "groups": k,
            "survivors": int(selection.survivors[frame].sum()),
            "kept_per_group": selection.quotas[frame, :k].tolist(),
        })
    return {
        "model": vlm.name,
        "frames": selection.num_views,
        "frames_sampled": len(clip.frames),
        "clip": {
            "total_frames": clip.total_frames, "duration_s": clip.duration, "fps": clip.fps, "size": list(clip.size),
        },
        "tokens_per_frame": selection.tokens_per_view,
        "budget": press.budget,
        "budget_total": int(selection.budget.sum()),
        "dynamic": press.dynamic,
        "phi_ref": selection.phi_ref,
        "preset": selection.preset,
        **fed_stats(numbers, selection, press, timings),
        "per_frame": per_frame,
        "figures": numbers,
    }


def fed_words(numbers: dict) -> str:
    """``"315 tokens + 5 CLS = 320"``: what the LLM receives, each part named (no CLS where none is fed)."""
    parts = [f"{numbers['patches_kept']} tokens"]
    if numbers["cls_fed"]:
        parts.append("CLS" if numbers["cls_fed"] == 1 else f"{numbers['cls_fed']} CLS (one per {numbers['view_word']})")
    if numbers["extra_fed"]:
        parts.append(f"{numbers['extra_fed']} {numbers['extra_name']}")
    return " + ".join(parts) + (f" = {numbers['fed']}" if len(parts) > 1 else "")


def stats_markdown(stats: dict) -> str:
    """The stats table, in the words of the model's preset and family, every count from
    demo/figures.py; with several views the per-group rows name the view they describe."""
    numbers = stats["figures"]
    preset = get_preset(stats["preset"])
    words = preset.words
    views = stats["views"]
    selectable = numbers["selectable"]
    scope = f" — {stats.get('first_view') or 'base'} view" if views > 1 else ""
    auto = lambda flag, formula: f" (auto: {formula})" if flag else ""  # noqa: E731
    timings = ", ".join(f"{name.removesuffix('_ms')} {value:.0f} ms" for name, value in stats["timings_ms"].items())
    tokens = f"{stats['tokens']}"
    if views > 1:
        tokens += f" in {views} views of {numbers['tokens_per_view']}"
        if len(set(selectable)) > 1 or selectable[0] != numbers["tokens_per_view"]:
            tokens += f" ({', '.join(map(str, selectable))} of them on the image)"
    kept = fed_words(numbers)
    if views > 1:
        kept += f"; per view {', '.join(map(str, numbers['kept_per_view']))}"
    rows = [
        ("Model", f"{stats['model']}"),
        ("Tokens T", tokens),
        ("Budget N" + (" / N'" if stats["dynamic"] else ""), numbers["budget_text"]),
        (f"Groups K{scope}", f"{stats['groups']}{auto(stats['groups_auto'], words.groups)}"),
        (f"λ{scope}", f"{exact(numbers['lam_exact'])}{auto(stats['lam_auto'], words.lam)}"),
        (f"Redundancy ρ{scope}", f"{stats['rho']:.3f}"),
        (f"Information φ = 1 − ρ{scope}", f"{stats['phi']:.3f}"),
        # What tau multiplies is named unless it is rho, whose row is just above.
        (f"NMS threshold τ = {words.tau}{scope}", numbers["tau_text"] + (f"; {words.tau_basis}" if preset.threshold_of != "rho" else "")),
        (f"NMS survivors{scope}", f"{stats['survivors']}"),
        (f"Kept per group{scope}", ", ".join(map(str, stats["kept_per_group"]))),
        ("Fed to the LLM" + (f", all {views} views" if views > 1 else ""), kept),
        ("Compression", f"{numbers['unmodified']} tokens unmodified / {numbers['fed']} = {numbers['compression_text']}"),
        ("Timings", timings),
    ]
    lines = ["| Quantity | Value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    legend_text = stats.get("legend")
    return ("<small>" + legend_text + "</small>\n\n" if legend_text else "") + "\n".join(lines)


def video_stats_markdown(stats: dict) -> str:
    """The clip's stats in its family's words: frames or temporal groups (Qwen-VL pairs
    frames), CLS only where it is fed, N_eff where the preset reads N per 576 tokens."""
    numbers = stats["figures"]
    word = numbers["view_word"]
    views = stats["frames"]
    unit = f"{views} {word}s" + (f" ({stats['frames_sampled']} frames sampled, {stats['frames_sampled'] // views} per group)"
                                 if stats["frames_sampled"] != views else "")
    cls = " + CLS each" if numbers["cls_per_view"] else ""
    budget = numbers["budget_text"].replace(" per view", f" per {word}").replace(" view ", f" {word} ")
    per_view = get_preset(stats["preset"]).budget_per_view  # False: N is read per 576 tokens (N_eff)
    if per_view:
        budget = f"N = {budget}"
    timings = ", ".join(f"{name.removesuffix('_ms')} {value:.0f} ms" for name, value in stats["timings_ms"].items())
    budget_column = "N'" if per_view else "N_eff"

    lines = [
        f"**{stats['visual_tokens']}** video tokens to the LLM ({fed_words(numbers)}) of {stats['visual_tokens_uncompressed']} "
        f"unmodified ({unit} × {stats['tokens_per_frame']} tokens{cls}); compression {numbers['compression_text']}. "
        f"Budget: {budget}. {timings}.",
        "",
        f"| {word.capitalize()} | Time | {budget_column} | Kept | ρ | φ | τ | K | Survivors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for frame in stats["per_frame"]:
        clamp = " (clamped)" if frame["budget_clamped"] else ""
        lines.append(
            f"| {frame['label']} | {frame['time_s']:.1f} s | {frame['budget']}{clamp} | {frame['kept']}"
            f"{' + CLS' if numbers['cls_per_view'] else ''} | {frame['rho']:.3f} | {frame['phi']:.3f} | {frame['tau']:.3f} | "
            f"{frame['groups']} | {frame['survivors']} |"
        )
    return "\n".join(lines)
