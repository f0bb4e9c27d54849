"""Write the NMS oracle cases: selections where the intra-group NMS does real work.

The golden cases from the authors' code mostly have tau >= the similarities inside groups, so
their NMS discards nothing. These cases plant tight concepts (near-duplicate tokens) so that
tau = lambda * rho < 1 suppresses many tokens, then compute the expected result with
tests/spec_reference.py (docs/SPEC.md transcribed loop by loop) on a PSCA grouping computed here
independently (numpy float64 SVD of the centred sigmoid, |V|, argmax). Run from the
repository root: ``python tests/oracle_cases/make_cases.py``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.spec_reference import cosine_similarity, default_cap, spec_select  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES = [
    # seed, tokens, width, concepts, noise, budget, reserved
    (17, 576, 64, 10, 0.25, 64, 1),
    (30, 576, 64, 6, 0.15, 128, 1),
    (15, 400, 48, 12, 0.35, 48, 0),
    (14, 576, 96, 20, 0.3, 192, 1),
]


def psca_groups(x: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    centred = p - p.mean(axis=1, keepdims=True)  # per token, over features (the reference)
    _, _, vt = np.linalg.svd(centred.T, full_matrices=False)  # right singular vectors: token space
    weights = np.abs(vt[:k].T)  # [T, k]
    top2 = np.sort(weights, axis=1)[:, -2:]
    return weights.argmax(axis=1), float((top2[:, 1] - top2[:, 0]).min())


def main() -> None:
    summary = []
    for seed, tokens, width, concepts, noise, budget, reserved in CASES:
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(concepts, width))
        labels = rng.integers(concepts, size=tokens)
        x = (centres[labels] + noise * rng.normal(size=(tokens, width))).astype(np.float32)
        importance = rng.random(tokens).astype(np.float32)
        k = max(1, budget // 4)
        groups, margin = psca_groups(x, k)
        # float32 rounding moves the weights by ~1e-5 (the Gram is a float32 product): a smaller
        # margin makes the expected grouping depend on the machine's BLAS.
        assert margin > 1e-4, f"seed {seed}: a near tie in the grouping ({margin:.2e}); pick another seed"
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        gram = (xn.sum(0) ** 2).sum() - (xn**2).sum()
        rho = np.float32(gram / (tokens * (tokens - 1)))
        tau = np.float32(np.float32(budget / 32) * rho)
        similarity = cosine_similarity(x).astype(np.float32)
        kept, quotas, survivor_counts = spec_select(groups, importance, similarity, tau, budget, reserved, default_cap(budget))
        sizes = np.bincount(groups, minlength=k)
        name = f"oracle{seed}.npz"
        np.savez_compressed(
            HERE / name, tokens=x, importance=importance, budget=budget, reserved=reserved, groups=groups,
            expected=np.array(kept), quotas=np.array(quotas), survivor_counts=np.array(survivor_counts), tau=tau,
        )
        summary.append({"file": name, "seed": seed, "T": tokens, "D": width, "concepts": concepts, "noise": noise,
                        "budget": budget, "reserved": reserved, "tau": round(float(tau), 4),
                        "suppressed": int(sizes.sum() - sum(survivor_counts))})
    (HERE / "cases.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
