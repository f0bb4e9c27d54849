"""``--model_args`` for the lmms-eval plug-in: ours taken out, checked, the rest left to lmms-eval.

Ours are ``method`` (a press of the registry, ``prunesid.methods.presses()``, plug-ins
included, or ``none`` for the unmodified model), the chosen press's options (``budget`` and
the others it declares, by their names) and ``records`` (where the per-sample records go). lmms-eval's model classes reject keyword arguments they do not
know, so everything else must be one of the wrapped class's parameters: an unknown name, a
setting of another method or a bad value fails here with a ValueError naming the argument.

Values arrive as lmms-eval parses them (``64`` -> int, ``true`` -> bool, ``0.5`` -> float,
``None`` -> the string "None"); they are converted to the option's declared type and the
press validates itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunesid.methods import Press, presses
from prunesid.methods.registry import NO_PRESS, build_press, default_method, options_of

OUR_KEYS = ("method", "records")


@dataclass(frozen=True)
class EvalSettings:
    method: str  # a registered press, or "none"
    press: Press | None  # None for the unmodified model
    records: str | None  # file or directory for the per-sample records (None: the default place)

    def describe(self) -> dict:
        """The settings as JSON: method and every option of the press."""
        return {"method": self.method, **({} if self.press is None else self.press.settings())}


def press_fields(method: str) -> list[str]:
    """The option names of ``method`` (none for ``method=none``)."""
    return [] if method == NO_PRESS else [spec.name for spec in options_of(presses()[method])]


def parse_model_args(kwargs: dict, accepted: set[str], model_id: str) -> tuple[EvalSettings, dict]:
    """Split lmms-eval's keyword arguments into our settings and the wrapped class's.

    ``accepted`` are the parameter names of the wrapped lmms-eval class. Returns the settings
    and the keyword arguments left for that class. ``method`` is matched case-insensitively
    (``method=PruneSID`` is ``prunesid``); without it, the registry's default method runs.
    """
    kwargs = dict(kwargs)
    known = presses()
    method = kwargs.pop("method", default_method())
    if isinstance(method, str):
        method = method.strip().lower()
    if method != NO_PRESS and method not in known:
        raise ValueError(f"--model_args method must be one of {[NO_PRESS, *known]}, got {method!r}")
    records = kwargs.pop("records", None)
    if records is not None and (not isinstance(records, str) or not records.strip()):
        raise ValueError(f"--model_args records must be a file or directory path, got {records!r}")

    ours = press_fields(method)
    every_press_field = {spec.name for cls in known.values() for spec in options_of(cls)}
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
                    f"give a method ({', '.join(known)}) or drop {name}"
                )
            raise ValueError(
                f"--model_args {name} is not a setting of method {method!r} (its settings: {', '.join(ours)})"
            )
        else:
            raise ValueError(
                f"--model_args {name} is not an argument of {model_id}: ours are {', '.join(OUR_KEYS)} and the press's "
                f"settings ({', '.join(ours) or 'none for method=none'}); the model's are {', '.join(sorted(accepted))}"
            )
    press = None if method == NO_PRESS else build(method, values)
    return EvalSettings(method=method, press=press, records=records), rest


def build(method: str, values: dict) -> Press:
    """The press ``method`` from lmms-eval's parsed values; errors name the argument."""
    shown = lambda name: f"--model_args {name}"  # noqa: E731
    try:
        return build_press(method, values, shown=shown)
    except ValueError as error:
        message = str(error)
        if message.startswith("--model_args"):
            raise
        raise ValueError(f"--model_args (method={method}): {message}") from error
