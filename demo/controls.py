"""The controls of a section (image or clip) as one value, read from its widgets in one place.

The sliders, the grouping radio and the dynamic switch become one :class:`Controls`, checked
by :meth:`Controls.read` (every value held to its slider's range, demo/limits.py), and every
handler, the chat's queue and its questions take that one value. The page's events (and the
API's) still take one parameter per widget: :func:`taking_widgets` puts them in place of a
handler's ``controls`` parameter, so the API's parameter names are the fields' names.

A new control is one field here (and its check in :meth:`Controls.read`) plus its widget in
app.py's section builder, listed in the same order as the fields.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from dataclasses import dataclass, fields

from demo.limits import BUDGET_RANGE, FRAME_BUDGET_RANGE, GROUPS_RANGE, LAM_RANGE
from prunesid import PruneSID

GROUPING_CHOICES = ["psca", "kmeans", "random"]
# The controls as the page labels them, for error messages.
CONTROL_NAMES = {"budget": "N (budget)", "groups": "K (groups)", "lam": "λ (lam)"}


@dataclass(frozen=True)
class Controls:
    """One section's control values, checked. 0 for K or lambda means "auto" (the preset's rule)."""

    budget: int = 64
    groups: int = 0
    lam: float = 0.0
    grouping: str = "psca"
    dynamic: bool = False

    @classmethod
    def read(cls, budget, groups, lam, grouping, dynamic, budget_range: tuple[int, int] = BUDGET_RANGE) -> "Controls":
        """The widgets' values (or an API request's), each refused by name unless it is one
        its widget could hold; N is held to ``budget_range`` (per image or per frame)."""
        budget = in_range(whole(budget, "budget"), "budget", budget_range)
        groups = in_range(whole(groups, "groups"), "groups", GROUPS_RANGE, "0 = auto: budget / 4")
        if not isinstance(grouping, str) or grouping not in GROUPING_CHOICES:
            raise ValueError(f"grouping must be one of {GROUPING_CHOICES}, got {shown(grouping)}")
        lam = 0.0 if lam in (None, "") else in_range(finite(lam, "lam"), "lam", LAM_RANGE, "0 = auto: budget / 32")
        return cls(budget, groups, lam, grouping, switch(dynamic, "dynamic"))

    def press(self, phi_ref: float | None = None) -> PruneSID:
        """The press these controls ask for; ``phi_ref`` (the model's calibration) is used only
        with the dynamic budget."""
        return PruneSID(
            budget=self.budget,
            groups=self.groups or None,
            lam=self.lam if self.lam > 0 else None,
            grouping=self.grouping,
            dynamic=self.dynamic,
            phi_ref=phi_ref if self.dynamic else None,
        )


WIDGETS = tuple(field.name for field in fields(Controls))  # the widgets' order on the page and in the API


def taking_widgets(function, budget_range: tuple[int, int] = BUDGET_RANGE):
    """``function(..., controls, ...)`` as an event function taking the widgets' values in
    place of ``controls`` (keeps the other parameters, their annotations and the name)."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    at = [parameter.name for parameter in parameters].index("controls")
    widgets = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in WIDGETS]
    outer = signature.replace(parameters=parameters[:at] + widgets + parameters[at + 1:])

    def arguments(args, kwargs) -> dict:
        values = outer.bind(*args, **kwargs).arguments
        controls = Controls.read(*(values.pop(name) for name in WIDGETS), budget_range=budget_range)
        return {**values, "controls": controls}

    if inspect.isgeneratorfunction(function):

        def run(*args, **kwargs):
            yield from function(**arguments(args, kwargs))
    else:

        def run(*args, **kwargs):
            return function(**arguments(args, kwargs))

    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a partial (an unbound method as a reference): no annotations to keep
        hints = {}
    hints.pop("controls", None)
    hints.pop("return", None)
    run.__signature__ = outer
    run.__annotations__ = hints
    run.__name__ = run.__qualname__ = getattr(function, "__name__", "run")
    run.__doc__ = getattr(function, "__doc__", None)
    return run


image_widgets = functools.partial(taking_widgets, budget_range=BUDGET_RANGE)
clip_widgets = functools.partial(taking_widgets, budget_range=FRAME_BUDGET_RANGE)  # N per frame


# --- one value's checks, each naming the control -------------------------------------------


def shown(value) -> str:
    """A request's value for a message: short, and printable whatever it holds."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def in_range(number, name: str, bounds: tuple, note: str = ""):
    low, high = bounds
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}{f' ({note})' if note else ''}, got {shown(number)}")
    return number


def switch(value, name: str) -> bool:
    """A checkbox's value: a boolean, nothing else ("yes", [] or {} are not a choice)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {shown(value)}")
    return value


def finite(value, name: str) -> float:
    """A control's value as a finite float, or a ValueError naming the control."""
    label = CONTROL_NAMES.get(name, name)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number ({label}), got {shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        raise ValueError(f"{name} must be a number ({label}), got {shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number ({label}), got {shown(value)}")
    return number


def whole(value, name: str) -> int:
    number = finite(value, name)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number ({CONTROL_NAMES.get(name, name)}), got {shown(value)}")
    return int(number)


def snap(value, name: str, bounds: tuple, step: float = 1):
    """A number typed into a slider's box as the slider would hold it: rounded to its step,
    clamped to its range (the page's own events; API requests are checked strictly)."""
    number = finite(value, name)
    low, high = bounds
    snapped = min(max(round(number / step) * step, low), high)
    return int(snapped) if float(step).is_integer() else float(snapped)
