"""The model families, found by looking rather than by a hand-kept list.

Each folder of :mod:`prunesid.families` holds everything its family is
(:mod:`.declaration` says what goes where) and declares itself in its ``__init__.py`` as
``FAMILY``. Plug-in families outside the package are modules that define ``FAMILY`` too,
named in ``$PRUNESID_PLUGINS`` or in the ``prunesid.families`` entry-point group
(:mod:`prunesid.plugins`).

The library never imports a family by name: the folders are imported here, by the name
the walk finds, so that a family may build on the whole library (its vLLM and lmms-eval
classes use the press path) while the library stays below it. Reading the declarations is
light; the adapters and built-ins are imported by :func:`load_families` /
:func:`builtin_models` on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from prunesid.family_kit.declaration import FamilyDeclaration, LmmsEvalModel

FAMILIES_PACKAGE = "prunesid.families"  # the package whose folders are the families

__all__ = [
    "FAMILIES_PACKAGE", "FamilyDeclaration", "LmmsEvalModel", "builtin_directory", "builtin_models", "declarations", "load_families",
    "refuse_foreign", "takers",
]


def declarations() -> tuple[FamilyDeclaration, ...]:
    """Every family's declaration, the package's folders and the plug-ins', in list order."""
    return _declarations()


@lru_cache(maxsize=1)
def _declarations() -> tuple[FamilyDeclaration, ...]:
    from prunesid.plugins import plugin_modules

    folders = importlib.import_module(FAMILIES_PACKAGE)
    found = []
    for info in pkgutil.iter_modules(folders.__path__):
        if info.ispkg:
            package = importlib.import_module(f"{FAMILIES_PACKAGE}.{info.name}")
            if not isinstance(getattr(package, "FAMILY", None), FamilyDeclaration):
                raise TypeError(f"{package.__name__} is a family folder without FAMILY = FamilyDeclaration(...) in its __init__.py")
            found.append(package.FAMILY)
    found += [module.FAMILY for module in plugin_modules() if isinstance(getattr(module, "FAMILY", None), FamilyDeclaration)]
    return tuple(sorted(found, key=lambda declared: declared.order))


def load_families() -> dict:
    """Every supported model type (``prunesid.family_kit.base.FAMILIES``), each adapter imported."""
    from prunesid.family_kit.base import FAMILIES

    for declared in declarations():
        importlib.import_module(declared.adapter_module)
    return FAMILIES


def builtin_models() -> dict:
    """Every offline built-in by name, in list order, each family's built-ins imported."""
    from prunesid.family_kit.builtin_registry import BUILTINS

    for declared in declarations():
        if declared.builtins_module:
            importlib.import_module(declared.builtins_module)
    listed = {}
    for declared in declarations():
        for name in declared.builtins:
            if name not in BUILTINS:
                raise RuntimeError(f"{declared.package} declares the built-in {name!r} but {declared.builtins_module} registers no such name")
            listed[name] = BUILTINS[name]
    return {**listed, **BUILTINS}  # the declared ones in list order, then any registered from elsewhere


def builtin_directory(name: str):
    """The directory holding the built-in ``name`` in its Hub layout (written on first use)."""
    from prunesid.family_kit.builtin_registry import write_builtin

    return write_builtin(name, builtin_models())


def refuse_foreign(options: dict, accepted, model_type: str) -> None:
    """ValueError naming the options given that a family (taking ``accepted``) does not take,
    and the families that take them."""
    foreign = [name for name in options if name not in accepted]
    if foreign:
        verb = "applies" if len(foreign) == 1 else "apply"
        where = " and ".join(dict.fromkeys(takers(name) for name in foreign))
        raise ValueError(f"{' and '.join(foreign)} {verb} only to {where}, not to {model_type!r} models")


def takers(name: str) -> str:
    """The families that take the model option ``name``, in words ("Qwen-VL models", "Qwen-VL
    clips"), from the families' declarations."""
    from prunesid.family_kit.options import FAMILY_OPTIONS

    noun = "clips" if FAMILY_OPTIONS[name].declaration.media == ("video",) else "models"
    return " and ".join(f"{declared.label} {noun}" for declared in declarations() if name in declared.options) or "no family"
