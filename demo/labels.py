"""The N, K and lambda sliders' labels in the words of the loaded model's preset.

The preset is read from the press the app builds (``PruneSID.selection_preset`` of the
family's ``preset``), never from a family's name, so a new family speaks its preset's
formulas without a line here. Each preset's rules (prunesid/presets.py) are written out
once, in :data:`AUTO_RULES`; tests/demo/test_slider_labels.py evaluates each written rule
against the K and lambda of a real selection.
"""

from __future__ import annotations

from prunesid import PruneSID

# What 0 ("auto") means on each slider, per preset: K's rule, lambda's rule (N: the budget;
# N_eff: the budget read through the preset; T: the image's selectable tokens).
AUTO_RULES = {
    "llava": {"groups": "N/4", "lam": "N/32"},
    "qwen2-vl": {"groups": "max(N_eff/4, 4)", "lam": "max(18 N_eff/T, 1)"},
}
UNKNOWN_RULE = "the preset's rule"  # a preset added later, before its words are written here
# An image size to count a family's views without encoding anything (views do not depend on
# its content; LLaVA-NeXT and Mini-Gemini HD have several at any size).
PROBE_SIZE = (640, 480)


def preset_of(vlm) -> str:
    """The preset the app's press reads its budget through on ``vlm``'s family."""
    return PruneSID(budget=64).selection_preset(vlm.family.preset)


def auto_rule(preset: str, control: str) -> str:
    return AUTO_RULES.get(preset, {}).get(control, UNKNOWN_RULE)


def views_per_image(vlm) -> int:
    """How many views one image becomes (1 for LLaVA-1.5 and Qwen-VL)."""
    try:
        return len(vlm.family.layout.selectable_tokens(PROBE_SIZE))
    except (AttributeError, ValueError, TypeError):
        return 1


def budget_label(vlm) -> str:
    """The N slider's label: what N counts on this model."""
    preset = preset_of(vlm)
    if preset == "qwen2-vl":
        return "N — visual tokens per 576 (the image keeps N_eff = T·N/576: see the stats)"
    if views_per_image(vlm) > 1:
        return "N — visual tokens per view (each view of the image: see the stats)"
    return "N — visual tokens per image"


def groups_label(vlm) -> str:
    return f"K — groups (0 = auto: {auto_rule(preset_of(vlm), 'groups')}; the stats show the value used)"


def lam_label(vlm) -> str:
    return f"λ — NMS threshold factor (0 = auto: {auto_rule(preset_of(vlm), 'lam')}; see the stats)"


def frame_budget_label(vlm) -> str:
    cls = getattr(vlm.family, "cls_slot", False)
    return "N — tokens per frame" + (" (CLS included)" if cls else "")


def frame_groups_label(vlm) -> str:
    return f"K — groups per frame (0 = auto: {auto_rule(preset_of(vlm), 'groups')})"


def frame_lam_label(vlm) -> str:
    return f"λ — NMS threshold factor (0 = auto: {auto_rule(preset_of(vlm), 'lam')})"
