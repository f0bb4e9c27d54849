"""Options declared once: what a user reads about a setting, the values it takes, how typed
text becomes a value, and the check every value passes when the thing is built.

A press's options are its dataclass fields, and so are a model family's
(:class:`prunesid.family_kit.options.FamilyOptions`): each made with :func:`option`, its type
the field's annotation (bool, int, float or str, optionally ``| None``). From these
declarations every front end is derived: the CLI's flags, lmms-eval's ``--model_args``, the
demo's method switch, the docs tables, and the checks at build (:func:`check_declared`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

OPTION = "prunesid.option"  # the dataclass field metadata key of an option's declaration
KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class Option:
    """An option's declaration: what a user reads about it and what values it takes."""

    help: str
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None  # a callable reads a registry when asked
    minimum: float | None = None  # smallest allowed value
    above: float | None = None  # values must be strictly greater
    aliases: tuple[str, ...] = ()  # further command-line spellings (``cls`` -> --cls / --no-cls)
    tag: str | None = None  # short name in result tables (a bool option: "tag" / "no tag")
    # One phrase for every refusal ("a positive integer": "min_pixels must be a positive integer, got 0").
    expects: str | None = None
    # The option's own rule for a value of its type (raises ValueError naming the option);
    # it replaces the type, choices and bounds checks.
    check: Callable[[Any], None] | None = None
    # Typed text -> value for the command line (raises ValueError with the reason); default: the type's.
    parser: Callable[[str], Any] | None = None
    metavar: str | None = None  # the command line's name of the value (default: the option's, upper-case)
    media: tuple[str, ...] = ("image", "video")  # the inputs it concerns (an images-only command leaves out "video"-only options)

    def allowed(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def option(default: Any, help: str, **declaration) -> Any:
    """A dataclass field with its declaration (see :class:`Option` for the keywords)."""
    return field(default=default, metadata={OPTION: Option(help, **declaration)})


@dataclass(frozen=True)
class DeclaredOption:
    """One option, resolved from its field: name, type, default and declaration."""

    name: str
    kind: type  # bool, int, float or str
    optional: bool  # None is allowed (usually: "the preset's" or "the family's own")
    default: Any
    declaration: Option

    @property
    def help(self) -> str:
        return self.declaration.help

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.declaration.allowed()

    @property
    def minimum(self):
        return self.declaration.minimum

    @property
    def above(self):
        return self.declaration.above

    @property
    def flags(self) -> list[str]:
        """Command-line spellings: ``--phi-ref``, then the aliases."""
        return ["--" + spelling.replace("_", "-") for spelling in (self.name, *self.declaration.aliases)]

    def allowed_values(self) -> list[str]:
        """What the declaration allows beyond the type: ``["one of a, b", ">= 1"]``."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(self.choices))
        if self.minimum is not None:
            parts.append(f">= {self.minimum}")
        if self.above is not None:
            parts.append(f"> {self.above}")
        return parts

    def describe_values(self, default: str | None = None) -> str:
        """``" [one of a, b; or None; default x]"``: what a user may give (``default``:
        another text for the default, e.g. when methods sharing the option differ)."""
        parts = self.allowed_values() + (["or None"] if self.optional else [])
        parts.append(f"default {self.default if default is None else default}")
        return " [" + "; ".join(parts) + "]"

    def parse(self, value, shown: str | None = None):
        """``value`` as a user typed it (text, or a number or bool already parsed) in this
        option's type; ``shown`` is how the error names the option."""
        shown = shown or self.name
        nullable = " or None" if self.optional else ""
        if self.optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
            return None
        if isinstance(value, str):
            value = value.strip()
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"{shown} must be true or false{nullable}, got {value!r}")
        if self.kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
                return int(value)
            raise ValueError(f"{shown} must be an integer{nullable}, got {value!r}")
        if self.kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{shown} must be a number{nullable}, got {value!r}") from None
        return value

    def parse_text(self, text: str):
        """A command-line value: the declaration's own parser, else the type's constructor
        (argparse reports either's ValueError)."""
        return (self.declaration.parser or self.kind)(text)

    def check(self, value) -> None:
        """``value`` against the declaration; the error names the option."""
        name = self.name
        if value is None:
            if self.optional:
                return
            raise TypeError(f"{name} must not be None")
        if self.declaration.check is not None:
            self.declaration.check(value)
            return
        if self.declaration.expects is not None:
            try:
                self._check_typed(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be {self.declaration.expects}, got {value!r}") from None
            return
        self._check_typed(value)

    def _check_typed(self, value) -> None:
        name = self.name
        nullable = " or None" if self.optional else ""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False{nullable}, got {value!r}")
            return
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an integer{nullable}, got {value!r}")
        if self.kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number{nullable}, got {value!r}")
        if self.kind is str and not isinstance(value, str):
            raise TypeError(f"{name} must be a string{nullable}, got {value!r}")
        allowed = self.choices
        if allowed is not None and value not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{name} must be at least {self.minimum}{nullable}, got {value!r}")
        if self.above is not None and value <= self.above:
            raise ValueError(f"{name} must be greater than {self.above}{nullable}, got {value!r}")


def declared_options(cls: type) -> list[DeclaredOption]:
    """The options of a dataclass, in field order; a field made without :func:`option` or
    of another type is refused."""
    return list(_declared_options(cls))


@functools.cache  # read on every object built: the class's annotations are resolved once
def _declared_options(cls: type) -> tuple[DeclaredOption, ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        declaration = f.metadata.get(OPTION)
        if declaration is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared: make it with option(default, help, ...)")
        hint = hints[f.name]
        members = list(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
        optional = type(None) in members
        kinds = [member for member in members if member is not type(None)]
        if len(kinds) != 1 or kinds[0] not in KINDS:
            raise TypeError(f"{cls.__name__}.{f.name}: an option is bool, int, float or str (or None), got {hint}")
        found.append(DeclaredOption(name=f.name, kind=kinds[0], optional=optional, default=f.default, declaration=declaration))
    return tuple(found)


def check_declared(instance) -> None:
    """Every option of ``instance`` (a dataclass of declared fields) against its declaration."""
    for spec in declared_options(type(instance)):
        spec.check(getattr(instance, spec.name))


def options_table(cls: type) -> str:
    """The options of ``cls`` as a markdown table (docs/methods.md holds one per press)."""
    rows = ["| Option | Type | Default | Values | What it does |", "|---|---|---|---|---|"]
    for spec in declared_options(cls):
        kind = spec.kind.__name__ + (" or None" if spec.optional else "")
        rows.append(f"| `{spec.name}` | {kind} | `{spec.default!r}` | {'; '.join(spec.allowed_values())} | {spec.help} |")
    return "\n".join(rows)
