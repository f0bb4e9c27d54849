"""The N, K and lambda sliders' labels in the words of the loaded model's preset.

The preset is read from the press the app builds (``PruneSID.selection_preset`` of the
family's ``preset``), never from a family's name, and its rules are the words it carries
(``Preset.words``, prunesid/presets.py), so a new family or preset speaks its formulas
without a line here. tests/demo/test_slider_labels.py evaluates each written rule against
the K and lambda of a real selection.
"""

from __future__ import annotations

from prunesid import PruneSID
from prunesid.presets import PresetWords, get_preset

# An image size to count a family's views without encoding anything (views do not depend on
# its content; LLaVA-NeXT and Mini-Gemini HD have several at any size).
PROBE_SIZE = (640, 480)


def preset_of(vlm) -> str:
    """The preset the app's press reads its budget through on ``vlm``'s family."""
    return PruneSID(budget=64).selection_preset(vlm.family.preset)


def words_of(vlm) -> PresetWords:
    """The preset's rules in words (N: the budget; N_eff: the budget read through the preset;
    T: the image's selectable tokens): what 0 ("auto") means on the K and lambda sliders."""
    return get_preset(preset_of(vlm)).words


def views_per_image(vlm) -> int:
    """How many views one image becomes (1 for LLaVA-1.5 and Qwen-VL)."""
    try:
        return len(vlm.family.layout.selectable_tokens(PROBE_SIZE))
    except (AttributeError, ValueError, TypeError):
        return 1


def budget_label(vlm) -> str:
    """The N slider's label: what N counts on this model."""
    words = words_of(vlm)
    if words.effective_budget is not None:  # N is read through the preset's rule
        return f"N — {words.budget_unit} (the image keeps N_eff = {words.effective_budget}: see the stats)"
    if views_per_image(vlm) > 1:
        return f"N — {words.budget_unit} (each view of the image: see the stats)"
    return "N — visual tokens per image"


def groups_label(vlm) -> str:
    return f"K — groups (0 = auto: {words_of(vlm).groups}; the stats show the value used)"


def lam_label(vlm) -> str:
    return f"λ — NMS threshold factor (0 = auto: {words_of(vlm).lam}; see the stats)"


def frame_budget_label(vlm) -> str:
    cls = getattr(vlm.family, "cls_slot", False)
    return "N — tokens per frame" + (" (CLS included)" if cls else "")


def frame_groups_label(vlm) -> str:
    return f"K — groups per frame (0 = auto: {words_of(vlm).groups})"


def frame_lam_label(vlm) -> str:
    return f"λ — NMS threshold factor (0 = auto: {words_of(vlm).lam})"
