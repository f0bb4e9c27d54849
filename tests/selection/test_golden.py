"""The reference preset reproduces the authors' code on every golden case, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunesid import select

# The golden cases travel with the tests, so a clone runs them anywhere; where the shared
# originals sit beside the checkout, the copies must be identical to them.
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SHARED_GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"
CASES = sorted(GOLDEN.glob("case*.npz"))


def _case(path):
    data = np.load(path)
    features = torch.from_numpy(data["features"].astype(np.float32))
    importance = torch.from_numpy(data["cls_attention"].astype(np.float32)).sum(dim=1)
    return data, features, importance


def test_golden_cases_are_present():
    assert len(CASES) == len(json.loads((GOLDEN / "cases.json").read_text())) >= 6


@pytest.mark.skipif(not SHARED_GOLDEN.is_dir(), reason="the shared golden originals are not beside this checkout")
def test_golden_copies_match_the_shared_originals():
    def files(root):
        return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())

    # Every shared case is here, byte for byte (tests/golden also holds the project's own
    # reference cases for the baselines, in baselines/).
    originals = files(SHARED_GOLDEN)
    assert set(originals) <= set(files(GOLDEN))
    for name in originals:
        assert (GOLDEN / name).read_bytes() == (SHARED_GOLDEN / name).read_bytes(), name


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_reference_preset_reproduces_golden_indices(path):
    data, features, importance = _case(path)
    budget = int(data["budget"])
    selection = select(features[:, 1:], budget, importance=importance, reserved=1)
    for b in range(features.shape[0]):
        # Index space of the golden files: CLS at 0, patch i at i + 1.
        got = np.concatenate([[0], selection.indices[b].numpy() + 1])
        np.testing.assert_array_equal(got, data["expected"][b])


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_reference_preset_reproduces_golden_intermediates(path):
    data, features, importance = _case(path)
    selection = select(features[:, 1:], int(data["budget"]), importance=importance, reserved=1)
    np.testing.assert_array_equal(selection.groups.numpy(), data["groups"])
    np.testing.assert_array_equal(selection.survivors.numpy(), data["survivors"])
    np.testing.assert_array_equal(selection.survivor_rank.numpy(), data["survivor_rank"])
    np.testing.assert_array_equal(selection.quotas.numpy(), data["quotas"])
    np.testing.assert_allclose(selection.rho.numpy(), data["rho"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(selection.tau.numpy(), data["tau"], rtol=0, atol=1e-5)


# --- the authors' Qwen2-VL variant (SPEC section 9) ------------------------------------------

QWEN_CASES = sorted((GOLDEN / "qwen2vl").glob("case*.npz"))


def test_qwen_golden_cases_are_present():
    assert len(QWEN_CASES) == len(json.loads((GOLDEN / "qwen2vl" / "cases.json").read_text())) >= 5


@pytest.mark.parametrize("path", QWEN_CASES, ids=lambda p: p.stem)
def test_qwen2_vl_preset_reproduces_golden_indices_and_intermediates(path):
    data = np.load(path)
    tokens = torch.from_numpy(data["tokens"].astype(np.float32))
    selection = select(tokens, int(data["budget"]), preset="qwen2-vl")
    np.testing.assert_array_equal(selection.indices[0].numpy(), data["expected"])
    assert int(selection.budget[0]) == int(data["budget_effective"]) == data["expected"].size
    assert int(selection.num_groups[0]) == int(data["num_groups"])
    np.testing.assert_allclose(float(selection.lam[0]), float(data["lam"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(float(selection.tau[0]), float(data["tau"]), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(selection.groups[0].numpy(), data["groups"])
    np.testing.assert_array_equal(selection.survivors[0].numpy(), data["survivors"])
    np.testing.assert_array_equal(selection.survivor_rank[0].numpy(), data["survivor_rank"])
    np.testing.assert_array_equal(selection.quotas[0].numpy(), data["quotas"])


@pytest.mark.skipif(not (SHARED_GOLDEN.parent / "SPEC.md").is_file(), reason="the shared specification is not beside this checkout")
def test_vendored_specification_matches_the_shared_one():
    vendored = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"
    assert vendored.read_bytes() == (SHARED_GOLDEN.parent / "SPEC.md").read_bytes()
