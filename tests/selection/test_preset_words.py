"""Each preset's rules in words (``Preset.words``), what front ends print instead of
branching on a preset's name: evaluated, the written K, lambda and N_eff rules give those
of a real selection under that preset, so a rule changed in the code but not in its words
(or words copied from the other preset) fails here."""

from __future__ import annotations

import re

import pytest
import torch

from prunesid import select
from prunesid.presets import PRESETS


def evaluate(text: str, whole: bool, **values) -> float:
    """A written rule as Python: "18 N_eff/T" is 18 * N_eff / T, "T·N" is T * N; K's division is whole."""
    expression = re.sub(r"(\d)\s+([A-Za-z])", r"\1*\2", text.replace("·", "*"))
    if whole:
        expression = expression.replace("/", "//")
    return eval(expression, {"max": max, "round": round, "__builtins__": {}}, values)  # noqa: S307 (our own words)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("budget, tokens", [(64, 576), (8, 576), (64, 1296), (100, 400), (24, 200)])
def test_the_written_rules_give_the_k_lambda_and_budget_of_a_selection(name, budget, tokens):
    words = PRESETS[name].words
    features = torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(tokens + budget))
    selection = select(features, budget, preset=name)
    used = int(selection.budget[0])
    values = {"N": budget, "N_eff": used, "T": tokens}
    assert evaluate(words.groups, whole=True, **values) == int(selection.num_groups[0])
    assert evaluate(words.lam, whole=False, **values) == pytest.approx(float(selection.lam[0]), rel=1e-6)
    kept = budget if words.effective_budget is None else evaluate(words.effective_budget, whole=False, **values)
    assert kept == used
    # N counts each view exactly when the preset keeps N itself.
    assert PRESETS[name].budget_per_view == (words.effective_budget is None)


def test_the_budget_label_says_what_n_counts():
    assert PRESETS["llava"].words.budget_label() == "N — visual tokens per view"
    assert PRESETS["qwen2-vl"].words.budget_label() == "N — visual tokens per 576 (the image keeps N_eff = max(round(T·N/576), 16))"
