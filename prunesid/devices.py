"""Whether reading a tensor back to Python is free: the one question the hot paths ask of a
device before they take a shortcut that needs a value on the host."""

from __future__ import annotations

import torch


def waits_are_free(device: torch.device) -> bool:
    """True on the CPU, where a read-back (``bool``, ``int``, ``tolist``, a data-dependent
    shape) costs nothing. On a GPU each one waits for the device, so there Krylov runs are
    fixed in advance and checked once, NMS rounds are counted before the loop, and the
    eigensolvers are torch's on the device rather than SciPy's on the host."""
    return device.type == "cpu"
