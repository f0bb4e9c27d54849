"""Compression methods as presses: PruneSID and the baselines people compare it with."""

from prunesid.methods.base import PRESSES, Press, VisionTokens, register_press
from prunesid.methods.prunesid import PruneSID

__all__ = ["PRESSES", "Press", "PruneSID", "VisionTokens", "register_press"]
