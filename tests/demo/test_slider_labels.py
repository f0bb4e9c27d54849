"""The K and lambda sliders say what 0 ("auto") means on the loaded model: the rule written
on each label, evaluated, gives the K and lambda of a real selection under that preset."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from demo import labels
from prunesid import select
from prunesid.presets import PRESETS


def stub_model(preset: str, views: int = 1, name: str = "llava-hf/llava-1.5-7b-hf"):
    """A model as the labels read it: its family's preset and its views per image."""
    layout = SimpleNamespace(selectable_tokens=lambda size: [576] * views)
    return SimpleNamespace(name=name, family=SimpleNamespace(preset=preset, layout=layout, cls_slot=True))


def rule(label: str) -> str:
    match = re.search(r"auto: (.+?)(;|\)$)", label)
    assert match, label
    return match.group(1)


def evaluate(text: str, whole: bool, **values) -> float:
    """A written rule as Python: "18 N_eff/T" is 18 * N_eff / T; K's division is whole."""
    expression = re.sub(r"(\d)\s+([A-Za-z])", r"\1*\2", text)
    if whole:
        expression = expression.replace("/", "//")
    return eval(expression, {"max": max, "__builtins__": {}}, values)  # noqa: S307 (our own labels)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_labels_write_the_presets_own_words(preset):
    """Catches a label that writes its own rule instead of the preset's (the words are then
    said in two places and can drift apart)."""
    words = PRESETS[preset].words
    model = stub_model(preset)
    assert rule(labels.groups_label(model)) == words.groups
    assert rule(labels.lam_label(model)) == words.lam


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("budget, tokens", [(64, 576), (8, 576), (64, 1296), (100, 400), (24, 200)])
def test_the_written_rule_gives_the_k_and_lambda_of_a_selection(preset, budget, tokens):
    features = torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(tokens + budget))
    selection = select(features, budget, preset=preset)
    used = int(selection.budget[0])  # N_eff: the budget read through the preset
    model = stub_model(preset)
    values = {"N": budget, "N_eff": used, "T": tokens}
    assert evaluate(rule(labels.groups_label(model)), whole=True, **values) == int(selection.num_groups[0])
    assert evaluate(rule(labels.lam_label(model)), whole=False, **values) == pytest.approx(float(selection.lam[0]), rel=1e-6)
    # The clip's sliders say the same per frame.
    assert rule(labels.frame_groups_label(model)) == rule(labels.groups_label(model))
    assert rule(labels.frame_lam_label(model)) == rule(labels.lam_label(model))


def test_the_labels_follow_the_preset_not_the_models_name():
    qwen_preset_llava_name = stub_model("qwen2-vl", name="tiny-random")
    assert "max(N_eff/4, 4)" in labels.groups_label(qwen_preset_llava_name)
    assert "max(18 N_eff/T, 1)" in labels.lam_label(qwen_preset_llava_name)
    assert "per 576" in labels.budget_label(qwen_preset_llava_name)
    llava_preset_qwen_name = stub_model("llava", name="Qwen/Qwen2.5-VL-7B-Instruct")
    assert "auto: N/4;" in labels.groups_label(llava_preset_qwen_name)
    assert "auto: N/32;" in labels.lam_label(llava_preset_qwen_name)
    assert labels.budget_label(llava_preset_qwen_name) == "N — visual tokens per image"
    assert "per view" in labels.budget_label(stub_model("llava", views=5))


def test_the_loaded_families_labels(tiny_vlm):
    from prunesid import load_vlm

    assert "auto: N/4;" in labels.groups_label(tiny_vlm) and "auto: N/32;" in labels.lam_label(tiny_vlm)
    qwen = load_vlm("tiny-random-qwen2-vl")
    assert "auto: max(N_eff/4, 4);" in labels.groups_label(qwen)
    assert "auto: max(18 N_eff/T, 1);" in labels.lam_label(qwen)
    assert labels.frame_budget_label(qwen) == "N — tokens per frame"  # no CLS in a Qwen frame
