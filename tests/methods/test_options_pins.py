"""Options as users type them (command line, lmms-eval model_args, vLLM settings): an empty
value of an optional option means "auto", a bool option takes only true / false.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import pytest

from prunesid import PruneSID
from prunesid.methods.registry import build_press, options_of


@pytest.mark.parametrize("empty", ["", "  ", "None", "null"])
def test_an_empty_value_of_an_optional_option_means_auto(empty):
    """Bug caught: ``""`` dropped from the spellings of None (``groups=`` in model_args, an
    emptied field, refused instead of meaning "derive it from the budget")."""
    press = build_press("prunesid", {"budget": "32", "groups": empty, "lam": empty, "phi_ref": empty})
    assert press == PruneSID(budget=32, groups=None, lam=None, phi_ref=None)


def test_an_empty_value_of_a_required_option_is_refused_by_name():
    with pytest.raises(ValueError, match="budget must be an integer, got ''"):
        build_press("prunesid", {"budget": ""})


@pytest.mark.parametrize("value", [5, 1, 0, 1.0, "1", "yes", ""])
def test_a_bool_option_refuses_anything_but_true_and_false(value):
    """Bug caught: a bool option taking integers (``isinstance(value, bool)`` widened to
    int: ``dynamic=5`` silently meant True, ``dynamic=0`` False)."""
    with pytest.raises(ValueError, match=r"dynamic must be true or false, got"):
        build_press("prunesid", {"budget": 64, "dynamic": value})


@pytest.mark.parametrize(("value", "wanted"), [(True, True), (False, False), ("true", True), (" False ", False), ("TRUE", True)])
def test_a_bool_option_takes_true_and_false_in_any_case(value, wanted):
    assert build_press("prunesid", {"budget": 64, "dynamic": value}).dynamic is wanted


def test_every_bool_option_of_every_press_refuses_an_integer():
    from prunesid.methods.registry import presses

    for name, cls in presses().items():
        for spec in options_of(cls):
            if spec.kind is bool:
                with pytest.raises(ValueError, match="must be true or false"):
                    spec.parse(2)
