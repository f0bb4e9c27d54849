"""PruneSID-Dyn never gives a view more tokens than the unmodified model feeds for it.

LLaVA-1.5 feeds its 576 patches and no CLS; PruneSID passes the CLS through inside the
budget. At N = 576 a rich view's dynamic share reached 577 (every patch and the CLS): more
than the unmodified model, which the demo then showed as "577 of 576 (compression 1.0x)".
Catches the cap counting the reserved CLS as room where the model does not feed it (the
``reserved_fed`` argument dropped or ignored), and the cap lost where it does feed it.
"""

from __future__ import annotations

import pytest
import torch

from prunesid import PruneSID, load_vlm
from prunesid.selection import select
from tests.conftest import scene
from tests.selection.test_select_budgets import _importance, _views_with_information


@pytest.mark.parametrize("reserved_fed, room", [(False, 576), (True, 577)])
def test_a_rich_view_stops_at_what_the_unmodified_model_feeds(reserved_fed, room):
    views = _views_with_information([0.2, 0.9], tokens=576, seed=5)  # a poor view and a rich one
    chosen = select(views, 576, importance=_importance(views), reserved=1, reserved_fed=reserved_fed, dynamic=True, phi_ref=0.2)
    assert int(chosen.budget.max()) == room  # the rich view: at the cap, not past it
    assert int(chosen.budget.min()) <= 576


def test_llava_dynamic_at_576_feeds_no_more_than_the_unmodified_model():
    vlm = load_vlm("tiny-random", device="cpu")
    flat, rich = scene(336, 336, seed=1).convert("L").convert("RGB"), scene(336, 336, seed=2)
    pressed = vlm.chat([flat, rich], "What is this?", press=PruneSID(budget=576, dynamic=True, phi_ref=1e-3), max_new_tokens=1)
    unmodified = vlm.chat([flat, rich], "What is this?", max_new_tokens=1)
    assert unmodified.visual_tokens == [576, 576]
    assert pressed.visual_tokens == [576, 576]  # phi far above the reference: both at the cap
