"""The CLI's help lists the built-ins from prunesid.family_kit.names (no transformers import):
that list must stay the registry's own, in its order."""

from __future__ import annotations

from prunesid.family_kit import names as builtin_names
from prunesid.vlm import BUILTIN_MODELS, DEFAULT_MODEL


def test_the_light_list_is_the_registrys_list_in_its_order():
    missing = [name for name in BUILTIN_MODELS if name not in builtin_names.BUILTIN_NAMES]
    extra = [name for name in builtin_names.BUILTIN_NAMES if name not in BUILTIN_MODELS]
    assert not missing and not extra, (
        f"prunesid/family_kit/names.py BUILTIN_NAMES differs from the registry: add {missing}, remove {extra}"
    )
    assert builtin_names.BUILTIN_NAMES == BUILTIN_MODELS, "prunesid/family_kit/names.py: list the built-ins in registration order"


def test_the_default_model_is_the_loaders_default():
    assert builtin_names.DEFAULT_MODEL == DEFAULT_MODEL
