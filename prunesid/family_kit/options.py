"""The model families' options, declared once (:mod:`prunesid.options`).

``load_vlm``'s checks, the CLI's model flags and the docs are derived from
:class:`FamilyOptions`. A family takes an option by naming it in its ``__init__`` and in its
declaration (``FamilyDeclaration.options``, checked against each other by the tests); giving one
to a family that does not is refused naming the families that take it. ``None`` leaves the
family's own default. This module imports nothing heavy: the CLI reads it to build --help.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunesid.options import declared_options, option

# The layouts of compressed anyres runs (prunesid.families.llava_next.adapter.NEWLINES; LLaVA-OneVision lists them too).
NEWLINES = ("authors", "rows")


def _check_fps(rate) -> None:
    from prunesid.video import FrameRate  # only when a rate is given: reading the declarations stays light

    FrameRate(fps=rate)  # "fps must be a number of frames per second in (0, 60], got ..."


def _fps_from_text(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; give frames per second of the clip, e.g. 2") from None
    _check_fps(rate)
    return rate


@dataclass(frozen=True)
class FamilyOptions:
    """Options of a model family, given to ``load_vlm`` / ``wrap`` (and the CLI's flags)."""

    min_pixels: int | None = option(
        None, "Qwen-VL: lower bound of the processor's dynamic resize (pixels)",
        expects="a positive integer", minimum=1,
    )
    max_pixels: int | None = option(
        None, "Qwen-VL: upper bound of the processor's dynamic resize (pixels)",
        expects="a positive integer", minimum=1,
    )
    newlines: str | None = option(
        None, "LLaVA-NeXT and LLaVA-OneVision: newline tokens of compressed runs, none (authors, LLaVA-NeXT's default) "
        "or one per row of the unpadded grid (rows, LLaVA-OneVision's default)",
        choices=NEWLINES,
    )
    fps: float | None = option(
        None, "Qwen-VL clips: sample RATE frames a second of the clip (seconds x RATE frames, 4 to 32, an even count, "
        "at most the clip's own) instead of 16 frames whatever its length",
        check=_check_fps, parser=_fps_from_text, metavar="RATE", media=("video",),
    )


FAMILY_OPTIONS = {spec.name: spec for spec in declared_options(FamilyOptions)}


def given_family_options(**options) -> dict:
    """The options given (not None), each checked against its declaration; a name that is
    no family option is refused."""
    given = {name: value for name, value in options.items() if value is not None}
    for name, value in given.items():
        if name not in FAMILY_OPTIONS:
            raise ValueError(f"{name} is not a model option; the model options are {', '.join(FAMILY_OPTIONS)}")
        FAMILY_OPTIONS[name].check(value)
    return given
