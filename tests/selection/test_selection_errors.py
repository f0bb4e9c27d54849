"""Bad input fails early with a message naming the parameter, the value and what is allowed."""

from __future__ import annotations

import pytest
import torch

from prunesid import select

TOKENS = torch.randn(2, 64, 16)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(budget=0), ValueError, r"budget must be a positive integer, got 0"),
        (dict(budget=-3), ValueError, r"budget must be a positive integer, got -3"),
        (dict(budget=16.0), ValueError, r"budget must be a positive integer, got 16\.0"),
        (dict(budget=True), ValueError, r"budget must be a positive integer, got True"),
        (dict(budget=16, reserved=16), ValueError, r"reserved must be smaller than budget \(16\), got reserved=16"),
        (dict(budget=16, reserved=-1), ValueError, r"reserved must be a non-negative integer, got -1"),
        (dict(budget=16, groups=0), ValueError, r"groups must be a positive integer \(K\) or None, got 0"),
        (dict(budget=16, groups=2.0), ValueError, r"groups must be a positive integer \(K\) or None, got 2\.0"),
        (dict(budget=[16]), ValueError, r"budget must hold one value per view: got 1 values for 2 views"),
        (dict(budget=[16, 0]), ValueError, r"budget must hold positive integers, got 0 in \[16, 0\]"),
        (dict(budget=torch.tensor([16.0, 8.0])), ValueError, r"budget must be a positive integer or one integer per view"),
        (dict(budget=[16, 4], reserved=4), ValueError, r"reserved must be smaller than budget \(4\), got reserved=4"),
        (dict(budget=16, preset="qwen"), ValueError, r"preset must be one of \['llava', 'qwen2-vl'\], got 'qwen'"),
        (dict(budget=16, valid=torch.ones(2, 64)), TypeError, r"valid must be a bool torch\.Tensor or None, got torch\.float32"),
        (dict(budget=16, valid=torch.ones(2, 63, dtype=torch.bool)), ValueError, r"valid must have shape \[2, 64\] \(one flag per token\), got shape \[2, 63\]"),
        (dict(budget=16, valid=torch.ones(2, 64, dtype=torch.bool).index_fill(0, torch.tensor([1]), False)), ValueError, r"valid leaves no selectable token in view 1"),
        (dict(budget=16, lam=0.0), ValueError, r"lam must be a positive finite number or None, got 0\.0"),
        (dict(budget=16, lam=float("nan")), ValueError, r"lam must be a positive finite number or None, got nan"),
        (dict(budget=16, grouping="spectral"), ValueError, r"grouping must be one of \['kmeans', 'psca', 'random'\], got 'spectral'"),
        (dict(budget=16, centering="row"), ValueError, r"centering must be one of \['token', 'feature'\], got 'row'"),
        (dict(budget=16, solver="lobpcg"), ValueError, r"solver must be one of \['exact', 'randomized', 'krylov'\], got 'lobpcg'"),
        (dict(budget=16, order="random"), ValueError, r"order must be one of \['reference', 'spatial'\], got 'random'"),
        (dict(budget=16, dynamic="yes"), TypeError, r"dynamic must be True or False, got 'yes'"),
        (dict(budget=16, seed=1.5), TypeError, r"seed must be an integer, got 1\.5"),
        (dict(budget=16, dynamic=True, phi_ref=0.0), ValueError, r"phi_ref must be a positive finite number or None, got 0\.0"),
    ],
)
def test_bad_settings_name_parameter_value_and_range(kwargs, error, message):
    with pytest.raises(error, match=message):
        select(TOKENS, **kwargs)


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        ([[0.0, 1.0]], TypeError, r"tokens must be a torch\.Tensor .* got list"),
        (torch.ones(8, 4, dtype=torch.long), TypeError, r"tokens must be a floating-point tensor, got dtype torch\.int64"),
        (torch.randn(16), ValueError, r"tokens must have shape \[T, D\] or \[B, T, D\], got shape \(16,\)"),
        (torch.randn(1, 2, 16, 8), ValueError, r"got shape \(1, 2, 16, 8\)"),
        (torch.randn(0, 8), ValueError, r"tokens must not be empty, got shape \(0, 8\)"),
        (torch.randn(1, 0, 8), ValueError, r"tokens must not be empty"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), ValueError, r"tokens contain NaN or inf"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), ValueError, r"tokens contain NaN or inf"),
    ],
)
def test_bad_tokens(tokens, error, message):
    with pytest.raises(error, match=message):
        select(tokens, 4)


@pytest.mark.parametrize(
    "importance, error, message",
    [
        (torch.rand(2, 63), ValueError, r"importance must have shape \[2, 64\] \(one value per token\), got shape \[2, 63\]"),
        (torch.rand(64), ValueError, r"importance must have shape \[2, 64\]"),
        (torch.full((2, 64), float("nan")), ValueError, r"importance contains NaN or inf"),
        (-torch.rand(2, 64), ValueError, r"importance must be non-negative"),
        ([0.5] * 64, TypeError, r"importance must be a torch\.Tensor or None, got list"),
    ],
)
def test_bad_importance(importance, error, message):
    with pytest.raises(error, match=message):
        select(TOKENS, 16, importance=importance)


def test_single_image_importance_may_be_one_dimensional():
    selection = select(TOKENS[0], 16, importance=torch.rand(64))
    assert selection.indices[0].numel() == 16
    with pytest.raises(ValueError, match=r"importance must have shape \[64\]"):
        select(TOKENS[0], 16, importance=torch.rand(1, 64))


def test_groups_beyond_the_selectable_tokens_are_clamped_like_the_default():
    """An explicit K larger than a view's selectable tokens is clamped, as the default K is
    (one rule; the Selection reports the K used)."""
    valid = torch.zeros(2, 64, dtype=torch.bool)
    valid[0, :40] = True
    valid[1, :] = True
    selection = select(TOKENS, 16, groups=50, valid=valid)
    assert selection.num_groups.tolist() == [40, 50]
    default = select(TOKENS[:, :8], 64)  # default K = 16 > T = 8
    assert default.num_groups.tolist() == [8, 8]
