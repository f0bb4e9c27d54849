"""docs/models.md's table of fed counts says what each built-in really feeds (fed_tokens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunesid import load_vlm
from prunesid.methods import DivPrune, PruneSID, RandomPrune, UniformPrune, VisionZip

PAGE = Path(__file__).resolve().parents[2] / "docs" / "models.md"
COLUMNS = {"PruneSID": PruneSID, "VisionZip": VisionZip, "DivPrune": DivPrune, "Random": RandomPrune, "Uniform": UniformPrune}
SIZE, BUDGET = (640, 480), 64


def table_rows() -> list[tuple[str, dict[str, str]]]:
    lines = PAGE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | no press |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0], dict(zip(header[1:], cells[1:]))))
    return rows


def models_of(label: str) -> list[tuple[str, dict]]:
    """The built-ins a row names and its newlines setting, if any."""
    newlines = re.search(r'newlines="(\w+)"', label)
    options = {"newlines": newlines.group(1)} if newlines else {}
    return [(name, options) for name in re.findall(r"tiny-random[\w.-]*\b", label)]


ROWS = table_rows()


def test_the_table_names_every_builtin():
    from prunesid.family_kit import builtin_models

    named = {name for label, _ in ROWS for name, _ in models_of(label)}
    assert named == set(builtin_models()), sorted(set(builtin_models()) ^ named)


@pytest.mark.parametrize("label, cells", ROWS, ids=[label.replace("`", "") for label, _ in ROWS])
def test_each_row_is_what_the_builtin_feeds(label, cells):
    for name, options in models_of(label):
        vlm = load_vlm(name, **options)
        assert cells["no press"] == str(vlm.fed_tokens(SIZE, None)), (name, "no press")
        for column, press_class in COLUMNS.items():
            try:
                fed = str(vlm.fed_tokens(SIZE, press_class(budget=BUDGET)))
            except ValueError as refusal:
                assert "CLS" in str(refusal), refusal
                fed = "needs CLS"
            assert cells[column] == fed, (name, column)
