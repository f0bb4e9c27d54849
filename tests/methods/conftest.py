"""Fixtures shared by the press tests."""

from __future__ import annotations

import pytest

from prunesid.methods import PRESSES


@pytest.fixture
def scratch_registry():
    """Presses registered by a test are removed after it."""
    before = dict(PRESSES)
    yield
    PRESSES.clear()
    PRESSES.update(before)
