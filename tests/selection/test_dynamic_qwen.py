"""PruneSID-Dyn on the "qwen2-vl" preset: the dynamic budget shares N_eff (merged tokens
kept) between the views by phi, clamped to [N_eff / 2, 2 N_eff] and the view's tokens, the
total staying views x N_eff.

Every expected budget here is computed by this file alone: N_eff from SPEC section 9 written
out, phi from the tokens in float64, and the shares by scanning the breakpoints of the
piecewise-linear total (prunesid's own code bisects), then largest-remainder rounding.

The bug these tests catch (each case was run against it and fails): N counted per 576 tokens
while the clamp is in the view's tokens, so at large N every view sits at the same bound
(T = 99, N = 288: both views kept 25) and at small N the floor of 16 evens them out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from prunesid import PruneSID, load_vlm, select
from prunesid.video import Video

BUDGETS = [16, 64, 288, 576]


def n_eff(tokens: int, budget: int) -> int:
    """SPEC section 9: N per 576 merged tokens, at least 16, everything for T <= 16."""
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def phi_of(tokens: torch.Tensor) -> float:
    """1 - the mean cosine similarity over pairs i < j (SPEC section 1), in float64."""
    unit = torch.nn.functional.normalize(tokens.double(), dim=-1)
    similarity = unit @ unit.T
    count = tokens.shape[0]
    return 1.0 - float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1)))


def expected_budgets(bases, phis, tokens, phi_ref=None) -> list[int]:
    """The dynamic budgets the documentation promises, computed without prunesid.

    N'_b = s * N_b phi_b / phi_ref clamped to [ceil(N_b / 2), min(2 N_b, T_b)] (a view of
    T <= 16 stays whole); with phi_ref None it is the N_b-weighted mean phi and s makes the
    shares sum to sum(N_b) where the bounds allow; then largest remainder (ties: lower view)."""
    whole = [t <= 16 for t in tokens]
    low = [t if w else math.ceil(b / 2) for b, t, w in zip(bases, tokens, whole)]
    high = [t if w else min(2 * b, t) for b, t, w in zip(bases, tokens, whole)]
    reference = phi_ref if phi_ref is not None else sum(b * p for b, p in zip(bases, phis)) / sum(bases)
    raw = [b * p / reference for b, p in zip(bases, phis)]
    if phi_ref is not None:
        return [min(max(round(r), lo), hi) for r, lo, hi in zip(raw, low, high)]

    def total_at(scale):
        return sum(min(max(scale * r, lo), hi) for r, lo, hi in zip(raw, low, high))

    target = sum(bases)
    # The total is piecewise linear in the scale, kinks where a view meets a bound.
    kinks = sorted({bound / r for r, lo, hi in zip(raw, low, high) if r > 0 for bound in (lo, hi)})
    if total_at(kinks[-1]) <= target:
        shares = [hi if r > 0 else lo for r, lo, hi in zip(raw, low, high)]
    else:
        start = 0.0
        for kink in kinks:
            if total_at(kink) >= target:
                break
            start = kink
        middle = (start + kink) / 2
        free = [lo < middle * r < hi for r, lo, hi in zip(raw, low, high)]
        fixed = sum(min(max(middle * r, lo), hi) for r, lo, hi, f in zip(raw, low, high, free) if not f)
        scale = (target - fixed) / sum(r for r, f in zip(raw, free) if f)
        shares = [min(max(scale * r, lo), hi) for r, lo, hi in zip(raw, low, high)]
    floors = [math.floor(x) for x in shares]
    missing = round(sum(shares) - sum(floors))
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in by_remainder[:missing]:
        floors[i] += 1
    return floors


def views(spec, dim=64, seed=0):
    """Padded tokens [B, T, D] and valid mask for views given as (tokens, kind): "flat" is one
    direction with a little noise (phi near 0), "noise" is Gaussian (phi near 1)."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(count for count, _ in spec)
    x = torch.randn(len(spec), longest, dim, generator=generator)
    valid = torch.zeros(len(spec), longest, dtype=torch.bool)
    for b, (count, kind) in enumerate(spec):
        valid[b, :count] = True
        if kind == "flat":
            x[b] = torch.ones(dim) + 0.01 * torch.randn(longest, dim, generator=generator)
    return x, valid


def run(spec, budget, phi_ref=None):
    x, valid = views(spec)
    selection = select(x, budget, valid=valid, preset="qwen2-vl", dynamic=True, phi_ref=phi_ref)
    counts = [count for count, _ in spec]
    phis = [phi_of(x[b, :count]) for b, count in enumerate(counts)]
    return selection, counts, phis


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize(
    "spec",
    [
        [(99, "flat"), (99, "noise")],  # two small images (320 x 240 on Qwen2.5-VL)
        [(99, "flat")] * 4 + [(99, "noise")] * 4,  # a clip's eight temporal groups
        [(432, "flat"), (99, "noise")],  # images of different sizes (672 x 504 and 320 x 240)
        [(99, "noise"), (432, "flat"), (12, "flat")],  # and one the preset leaves whole
    ],
    ids=["two-images", "clip-groups", "two-sizes", "with-a-whole-view"],
)
def test_the_shares_are_of_n_eff_in_merged_tokens(spec, budget):
    """Catches N' counted per 576 tokens but clamped to the view's tokens (every view at one
    bound at large N, the floor of 16 evening them out at small N), a preset applied again
    to the shares, a view of T <= 16 pruned, and a total other than views x N_eff."""
    selection, counts, phis = run(spec, budget)
    bases = [n_eff(count, budget) for count in counts]
    wanted = expected_budgets(bases, phis, counts)
    assert selection.budget.tolist() == wanted
    assert [index.numel() for index in selection.indices] == wanted  # kept, not only reported
    assert selection.requested_budget.tolist() == wanted
    # The batch reference is the mean phi weighted by N_eff (the views' sizes differ here).
    assert selection.phi_ref == pytest.approx(sum(b * p for b, p in zip(bases, phis)) / sum(bases), rel=1e-5)
    everything_kept = all(w == c for w, c in zip(wanted, counts))
    if not everything_kept:  # the flat view gets less than the noisy ones, never more
        flat = [w / b for (c, kind), w, b in zip(spec, wanted, bases) if kind == "flat" and c > 16]
        noisy = [w / b for (c, kind), w, b in zip(spec, wanted, bases) if kind == "noise" and c > 16]
        assert max(flat) < min(noisy)
    if all(math.ceil(b / 2) < w < min(2 * b, c) for b, w, c in zip(bases, wanted, counts) if c > 16):
        assert sum(wanted) == sum(bases)


@pytest.mark.parametrize("budget", BUDGETS)
def test_a_calibrated_phi_ref_sets_each_views_share_on_its_own(budget):
    """With phi_ref given, N'_eff = round(N_eff phi / phi_ref) within the bounds, per view
    (catches the clamp and the floor read per 576 tokens with a calibrated reference)."""
    spec = [(99, "flat"), (99, "noise"), (432, "noise")]
    selection, counts, phis = run(spec, budget, phi_ref=0.8)
    bases = [n_eff(count, budget) for count in counts]
    assert selection.budget.tolist() == expected_budgets(bases, phis, counts, phi_ref=0.8)
    assert selection.phi_ref == 0.8


def test_two_99_token_views_at_n_288_get_25_and_75():
    """At N = 288 two 99-token views, one flat and one noisy, were
    both kept 25 tokens with the bug; N_eff is 50, so they get 25 and 75."""
    selection, _, _ = run([(99, "flat"), (99, "noise")], 288)
    assert selection.budget.tolist() == [25, 75]


# On the model: the tower's merged tokens, flat grey and noise, as images and as a clip.


@pytest.fixture(scope="module")
def qwen():
    return load_vlm("tiny-random-qwen2.5-vl")


def _noise(seed, size=(320, 240)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _expected_on(encoded_list, budget):
    """Expected budgets of every view of ``encoded_list`` from the tower's own tokens."""
    counts, phis = [], []
    for encoded in encoded_list:
        for view in range(encoded.num_views):
            tokens = encoded.features[view]
            if encoded.valid is not None:
                tokens = tokens[encoded.valid[view]]
            counts.append(tokens.shape[0])
            phis.append(phi_of(tokens))
    return expected_budgets([n_eff(count, budget) for count in counts], phis, counts), counts


@pytest.mark.parametrize("budget", BUDGETS)
def test_on_qwen_images_a_flat_and_a_noisy_image_get_their_shares(qwen, budget):
    """tiny-random-qwen2.5-vl, a flat grey and a noisy 320 x 240 image (99 merged tokens
    each): with the bug both got the same count at every N here (16, 16, 25, 50)."""
    flat = Image.new("RGB", (320, 240), (128, 128, 128))
    encoded = [qwen.encode(flat), qwen.encode(_noise(1))]
    selections = qwen.compress(encoded, PruneSID(budget=budget, dynamic=True))
    wanted, counts = _expected_on(encoded, budget)
    got = [int(s.budget[0]) for s in selections]
    assert got == wanted and [int(s.indices[0].numel()) for s in selections] == wanted
    if budget < 576:
        assert got[0] < got[1]


@pytest.mark.parametrize("budget", BUDGETS)
def test_on_a_qwen_clip_flat_and_noisy_temporal_groups_get_their_shares(qwen, budget):
    """A 16-frame clip, 8 flat grey frames then 8 of noise: four flat temporal groups and four
    noisy ones of 99 merged tokens. With the bug every group kept the same count at N = 288
    and 576 (25, 50), and the floor of 16 hid it at 16 and 64."""
    flat = Image.new("RGB", (320, 240), (128, 128, 128))
    clip = Video.from_frames([flat] * 8 + [_noise(10 + i) for i in range(8)], fps=2)
    encoded = qwen.encode(clip)
    assert encoded.num_views == 8
    selection = qwen.compress(encoded, PruneSID(budget=budget, dynamic=True))[0]
    wanted, counts = _expected_on([encoded], budget)
    assert selection.budget.tolist() == wanted
    assert [int(index.numel()) for index in selection.indices] == wanted
    if budget < 576:
        assert max(wanted[:4]) < min(wanted[4:])
        assert sum(wanted) == 8 * n_eff(99, budget)  # groups x N_eff
