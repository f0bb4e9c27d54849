"""The baseline presses reproduce the authors' own selection code (tests/golden/baselines/:
how each case was derived is written in its README)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunesid import DivPrune, VisionTokens, VisionZip

ROOT = Path(__file__).resolve().parents[1] / "golden" / "baselines"
CASES = json.loads((ROOT / "cases.json").read_text())["cases"]


def _cases(method):
    return [pytest.param(case, id=case["file"].removesuffix(".npz")) for case in CASES if case["method"] == method]


def _load(case) -> dict:
    path = ROOT / case["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == case["sha256"], f"{path.name} changed since it was derived"
    with np.load(path) as data:
        return {name: torch.from_numpy(data[name]) for name in data.files}


@pytest.mark.parametrize("case", _cases("visionzip"))
def test_visionzip_reproduces_the_authors_code(case):
    data = _load(case)
    hidden = data["hidden"]
    tokens = VisionTokens(
        features=hidden[:, 1:],
        importance=data["cls_attention"][:, :, 1:].sum(dim=1),
        keys=data["metric"][:, 1:],
        cls_slot=True,
    )
    result = VisionZip(budget=case["budget"], contextual=case["contextual"]).compress(tokens)
    assert result.reserved == 1 and result.space == "keys"
    for view in range(case["batch"]):
        assert torch.equal(result.indices[view], data["kept"][view])
        torch.testing.assert_close(result.merged[view], data["contextual_out"][view], rtol=1e-5, atol=1e-5)
        # What the language model receives, in order: CLS, dominant patches, contextual tokens.
        rebuilt = torch.cat([hidden[view, :1], hidden[view, 1:][result.indices[view]], result.merged[view]])
        torch.testing.assert_close(rebuilt, data["out"][view], rtol=1e-5, atol=1e-5)
    assert result.output_counts() == [case["budget"]] * case["batch"]


def test_visionzip_default_split_is_the_authors():
    # Their README: dominant=54 (the CLS included), contextual=10 at 64 tokens; 108 + 20, 162 + 30.
    assert [VisionZip(budget=n).contextual_tokens for n in (64, 128, 192, 32)] == [10, 20, 30, 5]
    case = next(c for c in CASES if c["file"] == "visionzip_576_64.npz")
    assert (case["dominant"], case["contextual"]) == (54, 10)
    data = _load(case)
    tokens = VisionTokens(
        features=data["hidden"][:, 1:], importance=data["cls_attention"][:, :, 1:].sum(1), keys=data["metric"][:, 1:], cls_slot=True
    )
    result = VisionZip(budget=64).compress(tokens)  # the default contextual count
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(result.indices, data["kept"]))
    assert [m.shape[0] for m in result.merged] == [10, 10]


@pytest.mark.parametrize("case", _cases("divprune"))
def test_divprune_reproduces_the_authors_code(case):
    data = _load(case)
    picks = data["picks"]
    result = DivPrune(budget=case["keep"]).compress(VisionTokens(features=data["tokens"][None]))
    assert torch.equal(result.indices[0], picks.sort().values)
    # The order the greedy took them in, as theirs.
    order = torch.full((case["keep"],), -1, dtype=torch.long)
    taken = (result.rank[0] >= 0).nonzero().flatten()
    order[result.rank[0, taken]] = taken
    assert torch.equal(order, picks)
    assert result.reserved == 0 and result.output_counts() == [case["keep"]]
