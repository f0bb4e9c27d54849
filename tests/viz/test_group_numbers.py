"""Group numbers on the groups overlay never overlap, even on a tall thin image whose patches
are small and whose groups' centres crowd together."""

from __future__ import annotations

import pytest

from prunesid import PruneSID
from viz.marks import group_labels, number_groups
from viz.overlay import render_groups
from tests.conftest import scene


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("budget", [64, 192])
@pytest.mark.parametrize("model", ["tiny_vlm", "tiny_next_vlm"])
def test_no_two_group_numbers_overlap_on_a_400_by_1600_image(model, budget, request):
    """Every pair of number boxes (as drawn, stroke included) is disjoint, each box lies on
    the overlay, and most groups still carry their number. Catches numbers written on each
    group's centre patch regardless of its neighbours ("1213" where 12 and 13 collide)."""
    vlm = request.getfixturevalue(model)
    image = scene(400, 1600, seed=3)
    encoded = vlm.encode(image)
    selection = vlm.compress(encoded, PruneSID(budget=budget))[0]
    labels = group_labels(encoded.image, selection, encoded.grids)
    overlay = number_groups(render_groups(encoded.image, selection, encoded.grids), encoded.image, selection, encoded.grids)
    boxes = [box for _, _, _, box in labels]
    clashes = [(labels[i][0], labels[j][0]) for i in range(len(boxes)) for j in range(i) if _overlap(boxes[i], boxes[j])]
    assert clashes == []
    assert all(0 <= b[0] and 0 <= b[1] and b[2] <= overlay.width and b[3] <= overlay.height for b in boxes)  # none runs off the sheet
    groups = int(selection.num_groups.sum())
    assert len(labels) >= 0.6 * groups, (len(labels), groups)
