"""The press registry: the one list of methods every front end is derived from.

The built-in presses are the modules of this package (each registers itself); plug-in
presses come from outside it, loaded the first time the list is read (:func:`presses`):

- installed packages name a module or class in the ``prunesid.presses`` entry-point group
  (``[project.entry-points."prunesid.presses"] mine = "my_package.my_press"``);
- ``PRUNESID_PLUGINS=module[,module...]`` imports modules by name (no install needed).

Each module registers its presses with :func:`register_press`; they then appear in the
CLI's ``--method``, the demo's method switch and lmms-eval's ``method=``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Callable

from prunesid.methods.base import INPUTS, Press
from prunesid.options import DeclaredOption, declared_options, options_table  # noqa: F401  (options_table: docs/methods.md)

NO_PRESS = "none"  # the unmodified model, where a front end offers it

PRESSES: dict[str, type[Press]] = {}


def register_press(name: str) -> Callable[[type[Press]], type[Press]]:
    """Make a press available by ``name`` to every front end. The class must declare
    ``info`` and make each field with :func:`prunesid.options.option`."""

    def register(cls: type[Press]) -> type[Press]:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name == NO_PRESS:
            raise ValueError(f"a press name is lower-case letters, digits and _ (not {NO_PRESS!r}), got {name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Press) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"register_press({name!r}) takes a dataclass subclass of Press, got {cls!r}")
        if "info" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} declares no info = PressInfo(...) (label, paper, inputs, diagnostics)")
        taken = PRESSES.get(name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise ValueError(f"press name {name!r} is taken by {taken.__module__}.{taken.__qualname__}")
        unknown = [needed for needed in (*cls.info.requires, *cls.info.uses) if needed not in INPUTS]
        if unknown:
            raise ValueError(f"{cls.__name__}.info names unknown inputs {unknown}; known: {sorted(INPUTS)}")
        cls.name = name
        options = options_of(cls)  # every field declared, of a supported type
        for variant in cls.info.variants:
            stray = set(variant.settings) - {spec.name for spec in options}
            if stray:
                raise ValueError(f"{cls.__name__} variant {variant.label!r} sets unknown options {sorted(stray)}")
        cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Options (declared on the fields):\n" + "".join(
            f"        {spec.name}: {spec.help}{spec.describe_values()}\n" for spec in options
        )
        PRESSES[name] = cls
        return cls

    return register


def load_plugins() -> None:
    """Import the plug-in presses (entry points, then ``$PRUNESID_PLUGINS``), once."""
    from prunesid.plugins import plugin_modules

    plugin_modules()


def presses() -> dict[str, type[Press]]:
    """Every registered press, plug-ins included, in menu order (the default method first)."""
    load_plugins()
    return dict(sorted(PRESSES.items(), key=lambda item: (item[1].info.order, item[0])))


def press_class(method: str) -> type[Press]:
    found = presses()
    if method not in found:
        raise ValueError(f"method must be one of {list(found)}, got {method!r}")
    return found[method]


def default_method() -> str:
    """The method a front end uses when none is named: the first in menu order."""
    return next(iter(presses()))


# --- options ---------------------------------------------------------------------------

PressOption = DeclaredOption  # one option of a press (prunesid.options)


def options_of(cls: type[Press]) -> list[DeclaredOption]:
    """The options of a press class, in field order; a field made without
    :func:`~prunesid.options.option` or of another type is refused."""
    return declared_options(cls)


def build_press(method: str, values: dict, shown: Callable[[str], str] = str) -> Press:
    """The press ``method`` from user-typed ``values`` (by option name); errors are
    ValueErrors naming the option as ``shown(name)`` gives it."""
    cls = press_class(method)
    specs = {spec.name: spec for spec in options_of(cls)}
    converted = {}
    for name, value in values.items():
        if name not in specs:
            raise ValueError(f"{shown(name)} is not an option of method {method!r}; its options: {', '.join(specs)}")
        converted[name] = specs[name].parse(value, shown(name))
    try:
        return cls(**converted)
    except TypeError as error:
        raise ValueError(str(error)) from error


# --- menus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodChoice:
    """An entry of a method menu: a press, or one of its variants."""

    label: str
    method: str  # the registered press
    settings: dict  # the options the entry fixes (a variant's), besides the budget
    about: str  # one line: label, paper, what it keeps

    def press(self, budget: int, **settings) -> Press:
        return press_class(self.method)(budget=budget, **self.settings, **settings)


def method_choices() -> list[MethodChoice]:
    """Every press in menu order, each followed by its variants."""
    choices = []
    for name, cls in presses().items():
        info = cls.info
        choices.append(MethodChoice(info.label, name, {}, info.about()))
        for variant in info.variants:
            choices.append(MethodChoice(variant.label, name, dict(variant.settings), f"{variant.label}: {variant.summary}"))
    return choices


def info_of(result):
    """The declaration of the press that made ``result`` (a Compression), None if unknown."""
    cls = presses().get(getattr(result, "method", None))
    return None if cls is None else cls.info


def drawn_anchors(result):
    """``[B, T]`` bool: the tokens merged tokens were built on, as the press declares them
    (``Diagnostics.anchors``), or None."""
    info = info_of(result)
    field_name = None if info is None else info.diagnostics.anchors
    return None if field_name is None else getattr(result, field_name)


def has_groups(result) -> bool:
    """Whether ``result`` carries groups, survivors and quotas to draw (``Diagnostics.groups``)."""
    info = info_of(result)
    return info is not None and info.diagnostics.groups
