"""A refused model switch leaves the visitor on the model it had chosen before, not on the
start-up model, and touches no other visitor's choice."""

from __future__ import annotations

import pytest

from tests.demo.test_model_slot import Loader, slot_with


def test_a_model_that_cannot_load_leaves_the_session_on_its_own_earlier_choice():
    slot = slot_with(Loader(broken=("c",)))
    slot.choose("session", "client", "b")
    slot.choose("other", "another client", "b")
    with pytest.raises(ValueError, match=r"c could not be loaded \(disk full\); still serving b"):
        slot.choose("session", "client", "c")
    assert slot.chosen("session", "client") == "b"  # not the start-up model a
    assert slot.chosen("other", "another client") == "b"


def test_a_busy_switch_leaves_the_session_on_its_own_earlier_choice():
    slot = slot_with(Loader(), wait_s=0.3)
    slot.choose("session", "client", "b")
    with slot.lease("b"):  # a request still running on b
        with pytest.raises(ValueError, match="busy switching models"):
            slot.choose("session", "client", "c")
    assert slot.chosen("session", "client") == "b"
