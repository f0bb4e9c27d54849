"""validated_inputs' documented return types, pinned where a mutation run found them unchecked."""

from __future__ import annotations

import torch

from prunesid.selection.validate import validated_inputs


def test_without_a_mask_every_token_is_selectable_as_a_bool_mask():
    """Bug caught: the all-selectable mask made as float ones (dtype dropped). The stages
    combine it with bool masks; a float one works by accident there and breaks ``~valid``."""
    x, scores, valid = validated_inputs(torch.randn(2, 5, 4, dtype=torch.float64), None, None)
    assert (x.dtype, x.shape, scores) == (torch.float32, (2, 5, 4), None)
    assert valid.dtype == torch.bool and valid.shape == (2, 5) and bool(valid.all())
    single = validated_inputs(torch.randn(5, 4), None, None)[2]
    assert single.dtype == torch.bool and single.shape == (1, 5)


def test_an_unknown_preset_name_is_refused():
    """An unknown preset is refused with the presets' names. (The preset check's ``or`` read as
    ``and`` does not fail this: the preset lookup that follows refuses with the same words, so
    that mutant is equivalent; docs/testing.md lists it.)"""
    import pytest

    from prunesid import select

    with pytest.raises(ValueError, match=r"^preset must be one of .*'llava'.*got 'nope'$"):
        select(torch.randn(8, 4), budget=4, preset="nope")


def test_a_mask_that_is_not_a_bool_tensor_is_named_by_its_type():
    """Bug caught: the refusal's ``getattr(valid, "dtype", ...)`` without its default (a list
    then raised AttributeError instead of naming what was given)."""
    import pytest

    x = torch.randn(1, 3, 4)
    with pytest.raises(TypeError, match=r"^valid must be a bool torch.Tensor or None, got list$"):
        validated_inputs(x, None, [[True, False, True]])
    with pytest.raises(TypeError, match=r"got torch.float32$"):
        validated_inputs(x, None, torch.ones(1, 3))
