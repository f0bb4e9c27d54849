"""``--model_args`` for the lmms-eval plug-in: ours taken out, checked, the rest left to lmms-eval.

Ours are ``method`` (a press registered in :data:`prunesid.PRESSES`, or ``none`` for the
unmodified model), the chosen press's own fields (``budget``, ``dynamic``, ``grouping``,
``phi_ref``, ... exactly as the press dataclass names them) and ``records`` (where the
per-sample records go). lmms-eval's model classes reject keyword arguments they do not
know, so everything else must be one of the wrapped class's parameters: an unknown name, a
setting of another method or a bad value fails here with a ValueError naming the argument.

Values arrive as lmms-eval parses them (``64`` -> int, ``true`` -> bool, ``0.5`` -> float,
``None`` -> the string "None"); they are converted to the press field's annotated type and
the press validates itself.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from prunesid.methods import PRESSES, Press

NO_PRESS = "none"
OUR_KEYS = ("method", "records")


@dataclass(frozen=True)
class EvalSettings:
    method: str  # a name in PRESSES, or "none"
    press: Press | None  # None for the unmodified model
    records: str | None  # file or directory for the per-sample records (None: the default place)

    def describe(self) -> dict:
        """The settings as JSON: method and every field of the press."""
        fields = {} if self.press is None else {f.name: getattr(self.press, f.name) for f in dataclasses.fields(self.press)}
        return {"method": self.method, **fields}


def press_fields(method: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(PRESSES[method])}


def parse_model_args(kwargs: dict, accepted: set[str], model_id: str) -> tuple[EvalSettings, dict]:
    """Split lmms-eval's keyword arguments into our settings and the wrapped class's.

    ``accepted`` are the parameter names of the wrapped lmms-eval class. Returns the settings
    and the keyword arguments left for that class.
    """
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "prunesid")
    if isinstance(method, str):
        method = method.strip().lower()
    if method != NO_PRESS and method not in PRESSES:
        raise ValueError(f"--model_args method must be one of {[NO_PRESS, *sorted(PRESSES)]}, got {method!r}")
    records = kwargs.pop("records", None)
    if records is not None and (not isinstance(records, str) or not records.strip()):
        raise ValueError(f"--model_args records must be a file or directory path, got {records!r}")

    ours = {} if method == NO_PRESS else press_fields(method)
    every_press_field = {name for cls in PRESSES.values() for name in (f.name for f in dataclasses.fields(cls))}
    values, rest = {}, {}
    for name, value in kwargs.items():
        if name in ours:
            values[name] = value
        elif name in accepted:
            rest[name] = value
        elif name in every_press_field:
            if method == NO_PRESS:
                raise ValueError(
                    f"--model_args {name} is a press setting but method=none runs the unmodified model; "
                    f"give a method ({', '.join(sorted(PRESSES))}) or drop {name}"
                )
            raise ValueError(
                f"--model_args {name} is not a setting of method {method!r} (its settings: {', '.join(ours)})"
            )
        else:
            raise ValueError(
                f"--model_args {name} is not an argument of {model_id}: ours are {', '.join(OUR_KEYS)} and the press's "
                f"settings ({', '.join(ours) or 'none for method=none'}); the model's are {', '.join(sorted(accepted))}"
            )
    press = None if method == NO_PRESS else build_press(method, values)
    return EvalSettings(method=method, press=press, records=records), rest


def build_press(method: str, values: dict) -> Press:
    """The press ``method`` with ``values`` converted to its fields' types; errors name the field."""
    cls = PRESSES[method]
    hints = typing.get_type_hints(cls)
    converted = {name: _convert(name, value, hints.get(name)) for name, value in values.items()}
    try:
        return cls(**converted)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--model_args (method={method}): {error}") from error


def _convert(name: str, value, hint):
    """``value`` as lmms-eval parsed it, in the type ``hint`` asks for."""
    if hint is None:
        return value
    options = _union_members(hint)
    if type(None) in options and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
        return None
    options = [option for option in options if option is not type(None)]
    if bool in options:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if len(options) == 1:
            raise ValueError(f"--model_args {name} must be true or false, got {value!r}")
    if int in options and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if float not in options:
            raise ValueError(f"--model_args {name} must be an integer{' or None' if type(None) in _union_members(hint) else ''}, got {value!r}")
    if float in options and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        raise ValueError(f"--model_args {name} must be a number{' or None' if type(None) in _union_members(hint) else ''}, got {value!r}")
    return value


def _union_members(hint) -> list:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]
