"""The one press path's small parts: placeholder runs in either form, the content key."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from prunesid.pipeline import media_key, set_placeholder_runs


def test_placeholder_runs_are_set_from_one_placeholder_or_from_the_full_runs():
    single = torch.tensor([[1, 9, 2, 9, 3]])
    assert set_placeholder_runs(single, 9, [3, 2], [2, 1]).tolist() == [[1, 9, 9, 2, 9, 3]]
    full = torch.tensor([[1, 9, 9, 9, 2, 9, 9, 3]])
    assert set_placeholder_runs(full, 9, [3, 2], [1, 2]).tolist() == [[1, 9, 2, 9, 9, 3]]
    adjacent = torch.tensor([[9, 9, 9, 9, 5]])  # two full runs side by side are told apart by their lengths
    assert set_placeholder_runs(adjacent, 9, [3, 1], [1, 1]).tolist() == [[9, 9, 5]]
    with pytest.raises(ValueError, match=r"holds 3 image placeholder tokens but its 2 image\(s\) need one each or 5 \(\[3, 2\]"):
        set_placeholder_runs(torch.tensor([[9, 9, 9, 1]]), 9, [3, 2], [1, 1])


def test_the_content_key_reads_pixels_size_and_mode():
    image = Image.new("RGB", (4, 3), "teal")
    assert media_key(image) == media_key(image.copy())
    assert media_key(image) != media_key(Image.new("RGB", (3, 4), "teal"))
    assert media_key(image) != media_key(image.convert("RGBA"))
    changed = image.copy()
    changed.putpixel((0, 0), (0, 0, 0))
    assert media_key(image) != media_key(changed)
