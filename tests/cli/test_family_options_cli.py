"""The model family options (prunesid.family_kit.options.FamilyOptions) are declared once: the
CLI's flags and load_vlm's checks are derived from the declarations, so a flag that drifts
from its declaration (help, choices, the commands that offer it) or a check that forgets
one fails here."""

from __future__ import annotations

import pytest

from prunesid.cli import _parser
from prunesid.family_kit import takers
from prunesid.family_kit.options import FAMILY_OPTIONS, FamilyOptions, given_family_options


def _flags(command: str) -> dict:
    sub = _parser()._subparsers._group_actions[0].choices[command]
    return {action.dest: action for action in sub._actions}


@pytest.mark.parametrize("command", ["chat", "compress", "calibrate"])
def test_every_declared_option_is_a_flag_with_its_declared_words(command):
    flags = _flags(command)
    for name, spec in FAMILY_OPTIONS.items():
        if command == "calibrate" and "image" not in spec.declaration.media:
            assert name not in flags  # calibrate reads images: no clip options
            continue
        action = flags[name]
        assert action.option_strings == spec.flags and action.help == spec.help and action.default is None
        assert action.choices == spec.choices


def test_the_newlines_declaration_names_both_families_that_take_it():
    spec = FAMILY_OPTIONS["newlines"]
    assert "LLaVA-NeXT" in spec.help and "LLaVA-OneVision" in spec.help
    assert takers("newlines") == "LLaVA-NeXT models and LLaVA-OneVision models"


@pytest.mark.parametrize("options, message", [
    ({"newlines": "none"}, r"newlines must be one of \['authors', 'rows'\], got 'none'"),
    ({"min_pixels": True}, "min_pixels must be a positive integer, got True"),
    ({"fps": 0}, r"fps must be a number of frames per second in \(0, 60\], got 0"),
    ({"tiles": 4}, "tiles is not a model option; the model options are min_pixels, max_pixels, newlines, fps"),
])
def test_a_value_its_declaration_refuses_is_refused_before_any_model_loads(options, message):
    with pytest.raises(ValueError, match=message):
        given_family_options(**options)


def test_none_leaves_the_familys_default():
    assert given_family_options(**{name: None for name in FAMILY_OPTIONS}) == {}
    assert list(FAMILY_OPTIONS) == [name for name in FamilyOptions.__dataclass_fields__]
