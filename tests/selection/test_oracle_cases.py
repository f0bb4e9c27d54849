"""Fixed cases where NMS suppresses for real, checked against the loop-by-loop SPEC oracle.

Most golden cases from the authors' code never discard a token in NMS (tau is above every
similarity inside a group); these cases (tests/oracle_cases/make_cases.py) do, heavily.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prunesid import select

HERE = Path(__file__).resolve().parents[1] / "oracle_cases"
CASES = sorted(HERE.glob("oracle*.npz"))


def test_oracle_cases_are_present_and_suppress():
    summary = json.loads((HERE / "cases.json").read_text())
    assert len(CASES) == len(summary) >= 4
    assert all(case["suppressed"] > 100 and case["tau"] < 1 for case in summary)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_select_matches_the_spec_oracle_where_nms_suppresses(path):
    data = np.load(path)
    tokens = torch.from_numpy(data["tokens"])
    selection = select(tokens, int(data["budget"]), importance=torch.from_numpy(data["importance"]), reserved=int(data["reserved"]))
    np.testing.assert_array_equal(selection.groups[0].numpy(), data["groups"])
    np.testing.assert_allclose(float(selection.tau[0]), float(data["tau"]), rtol=0, atol=1e-6)
    k = int(selection.num_groups[0])
    survivors_per_group = np.bincount(data["groups"][selection.survivors[0].numpy()], minlength=k)
    np.testing.assert_array_equal(survivors_per_group, data["survivor_counts"])
    np.testing.assert_array_equal(selection.quotas[0, :k].numpy(), data["quotas"])
    np.testing.assert_array_equal(selection.indices[0].numpy(), data["expected"])
