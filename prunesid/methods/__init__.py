"""Compression methods as presses: PruneSID and the baselines people compare it with."""

from prunesid.methods.base import PRESSES, Press, VisionTokens, register_press
from prunesid.methods.divprune import DivPrune
from prunesid.methods.floors import RandomPrune, UniformPrune
from prunesid.methods.prunesid import PruneSID
from prunesid.methods.visionzip import VisionZip

__all__ = ["PRESSES", "DivPrune", "Press", "PruneSID", "RandomPrune", "UniformPrune", "VisionTokens", "VisionZip", "register_press"]
