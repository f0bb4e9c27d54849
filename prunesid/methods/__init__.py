"""Compression methods as presses: PruneSID and the baselines people compare it with.

Every module of this package is imported here, and each registers its presses
(``registry.register_press``): adding a method is adding a module (and its tests). The
registered classes are also reachable here by their class names (``PruneSID``, ...).
"""

import importlib
import pkgutil

from prunesid.methods.base import Diagnostics, Press, PressInfo, Variant, VisionTokens
from prunesid.methods.common import PerViewPress, Views
from prunesid.options import Option, option
from prunesid.methods.registry import PRESSES, default_method, method_choices, options_of, presses, register_press

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
globals().update({cls.__name__: cls for cls in PRESSES.values()})

__all__ = [
    "PRESSES", "Diagnostics", "Option", "PerViewPress", "Press", "PressInfo", "Variant", "VisionTokens", "Views", "default_method",
    "method_choices", "option", "options_of", "presses", "register_press",
    *sorted(cls.__name__ for cls in PRESSES.values()),
]
