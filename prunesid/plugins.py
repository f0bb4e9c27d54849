"""Plug-ins from outside the package: presses and model families, found the same way.

- installed packages name a module in the ``prunesid.presses`` or ``prunesid.families``
  entry-point group (``[project.entry-points."prunesid.families"] mine = "my_package.my_family"``);
- ``PRUNESID_PLUGINS=module[,module...]`` imports modules by name (no install needed).

A plug-in module registers its presses on import (``register_press``) and declares a family
as ``FAMILY`` (:class:`prunesid.families.FamilyDeclaration`). Imported once per process.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType

ENTRY_POINT_GROUPS = ("prunesid.presses", "prunesid.families")
PLUGINS_ENV = "PRUNESID_PLUGINS"


@lru_cache(maxsize=1)
def plugin_modules() -> tuple[ModuleType, ...]:
    """Every plug-in module, imported: entry points first, then ``$PRUNESID_PLUGINS``."""
    modules = []
    for group in ENTRY_POINT_GROUPS:
        for point in entry_points(group=group):
            try:
                loaded = point.load()
            except Exception as error:
                raise ImportError(f"the {group} entry point {point.name!r} ({point.value}) failed to load: {error}") from error
            modules.append(loaded if isinstance(loaded, ModuleType) else importlib.import_module(loaded.__module__))
    for name in filter(None, (part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(f"${PLUGINS_ENV} names {name!r}, which cannot be imported: {error}") from error
    return tuple(modules)
