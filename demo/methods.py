"""The demo's method switch and "Compare methods": plain functions of the control values.

The switch lists every press of the registry (``prunesid.methods.method_choices()``: each
press, then its variants, plug-ins included) on the same image, model and budget. No layout
here (app.py places the components); every function reads its image through
:func:`demo.files.read_image_bytes` (only files the app was given) and raises ValueError
with the library's message for bad input (app.py turns it into ``gr.Error``).
"""

from __future__ import annotations

import math
import time

from demo.figures import compression_text, method_figures
from demo.files import read_image_bytes
from prunesid.methods import Press, method_choices
from prunesid.methods.base import INPUTS
from viz.merged import compare_compressions, render_compression

# The switch's entries, in the order the page lists them (the first is selected at start).
CHOICES = {choice.label: choice for choice in method_choices()}
METHOD_CHOICES = list(CHOICES)
DEFAULT_QUESTION = "Describe the image."
PER_ROW = 3  # panels per row of the comparison sheet


def checked_method(method) -> str:
    """The switch's value, refused by name unless it is one of the choices."""
    if not isinstance(method, str) or method not in CHOICES:  # a list or dict would be unhashable
        raise ValueError(f"method must be one of {METHOD_CHOICES}, got {method!r}")
    return method


def method_press(method: str, budget, phi_ref: float | None = None) -> Press:
    """The switch's value and the budget slider -> a press (the method's defaults otherwise);
    a press that needs calibration gets the app's ``phi_ref`` when there is one."""
    checked_method(method)
    try:
        press = CHOICES[method].press(_whole(budget, "budget"))
    except TypeError as error:
        raise ValueError(str(error)) from error
    return press.calibrated(phi_ref) if press.needs_calibration and phi_ref is not None else press


def unavailable(vlm) -> dict[str, str]:
    """The switch's entries this model cannot run, each with why (a press that requires an
    input the family's tower does not give, e.g. CLS attention from a tower without a CLS
    token): the page does not offer them, and says why beside the switch."""
    layout = vlm.family.layout
    reasons = {}
    for label, choice in CHOICES.items():
        press = choice.press(64)
        missing = [INPUTS[name] for name in press.info.requires if getattr(layout, name, True) is False]
        if missing:
            reasons[label] = f"{press.info.label} needs {' and '.join(missing)}, which {vlm.name} does not give"
    return reasons


def offered(vlm) -> list[str]:
    """The switch's entries on this model, in the page's order."""
    missing = unavailable(vlm)
    return [label for label in METHOD_CHOICES if label not in missing]


def unavailable_note(vlm) -> str:
    """The line beside the switch naming what is not offered and why ("" when all are)."""
    missing = unavailable(vlm)
    if not missing:
        return ""
    return "<small>Not offered on this model: " + "; ".join(f"**{label}**: {why}" for label, why in missing.items()) + ".</small>"


def about(method: str, press: Press, visual_tokens: int) -> str:
    """What a row of the tables says about the method; a budget that varies per image says
    so, beside the same N as the others."""
    if press.budget_is_fixed:
        return CHOICES[method].about
    return f"{method}: average N over a calibration set; this image gets {visual_tokens}"


def timed_compress(vlm, encoded, press: Press):
    """``(result, ms)``: the press on one image's cached features, timed (not the VLM's cache).
    A press that requires an input the model does not give (``PressInfo.requires``) is a
    ValueError saying which."""
    tokens = vlm.vision_tokens([encoded])
    missing = press.missing_inputs(tokens)
    if missing:
        raise ValueError(f"{press.info.label} needs {' and '.join(missing)}, which this model does not give")
    start = time.perf_counter()
    result = press.compress(tokens)
    return result, (time.perf_counter() - start) * 1000


def method_stats(vlm, encoded, method: str, press: Press, result, select_ms: float) -> dict:
    """A row of the methods' tables: the method, its budget, and its counts from demo/figures.py."""
    counts = method_figures(vlm, encoded, result)
    return {
        "method": method,
        "about": about(method, press, counts["visual_tokens"]),
        "budget": press.budget,
        "budget_fixed": press.budget_is_fixed,
        **counts,
        "select_ms": round(select_ms, 2),
    }


def analyze_method(vlm, image, method, budget, phi_ref: float | None = None):
    """The method switch: ``(kept patches (merged tokens' coverage drawn), stats dict, stats
    markdown)`` for one method at one budget."""
    press = method_press(method, budget, phi_ref)
    encoded = vlm.encode(read_image_bytes(image))
    result, select_ms = timed_compress(vlm, encoded, press)
    stats = method_stats(vlm, encoded, method, press, result, select_ms)
    return render_compression(encoded.image, result, encoded.grids), stats, stats_markdown([stats])


def compare_methods(vlm, image, question, budget, phi_ref: float | None = None, max_new_tokens: int = 48, methods=None):
    """"Compare methods": every method at the same budget on the same image. Returns
    ``(sheet of kept patches per method, markdown table, rows)``; each row holds the method's
    answer to ``question``, its selection and prefill times and its visual tokens, and the
    first row is the unmodified model (all visual tokens). A method the model cannot run
    (one that requires CLS attention, on a tower without a CLS token) gets a row saying why
    instead of stopping the rest. A press whose budget varies per image sits beside its fixed
    budget at the same N, its row saying how many tokens this image got."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty: type a question about the image")
    methods = METHOD_CHOICES if methods is None else list(methods)
    presses = {method: method_press(method, budget, phi_ref) for method in methods}
    data = read_image_bytes(image)
    encoded = vlm.encode(data)
    full = vlm.chat(data, question, press=None, max_new_tokens=max_new_tokens)
    rows = [{
        "method": "all tokens", "about": "the unmodified model", "visual_tokens": full.visual_tokens[0],
        "select_ms": 0.0, "prefill_ms": round(full.timings["prefill_ms"], 1), "answer": full.text,
    }]
    results = {}
    for method, press in presses.items():
        try:
            result, select_ms = timed_compress(vlm, encoded, press)
        except ValueError as error:
            rows.append({"method": method, "about": CHOICES[method].about, "unavailable": str(error)})
            continue
        reply = vlm.chat(data, question, press=press, max_new_tokens=max_new_tokens)
        row = method_stats(vlm, encoded, method, press, result, select_ms)
        # What the language model actually received with this answer.
        row.update(visual_tokens=reply.visual_tokens[0], prefill_ms=round(reply.timings["prefill_ms"], 1), answer=reply.text)
        row["about"] = about(method, press, row["visual_tokens"])
        rows.append(row)
        results[method if press.budget_is_fixed else f"{method}, N = {press.budget} on average"] = result
    if not results:
        raise ValueError("no method could run on this model: " + "; ".join(row["unavailable"] for row in rows[1:]))
    sheet = compare_compressions(encoded.image, results, encoded.grids, per_row=PER_ROW)
    return sheet, answers_markdown(rows), rows


def stats_markdown(rows: list[dict]) -> str:
    lines = ["| Method | Kept | Merged | Visual tokens to the LLM | Selection |", "|---|---|---|---|---|"]
    for row in rows:
        cls = "" if not row["reserved"] else " + CLS" if row["views"] == 1 else f" + {row['reserved'] * row['views']} CLS"
        lines.append(
            f"| {row['about']} | {row['kept']}{cls} | {row['merged']} | {row['visual_tokens']} of "
            f"{row['visual_tokens_uncompressed']} ({compression_text(row['visual_tokens_uncompressed'], row['visual_tokens'])}) | {row['select_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def answers_markdown(rows: list[dict]) -> str:
    lines = ["| Method | Visual tokens | Selection | Prefill | Answer |", "|---|---|---|---|---|"]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"| {row['method']} | — | — | — | not available: {_cell(row['unavailable'])} |")
            continue
        name = row["method"] if row.get("budget_fixed", True) else row["about"]
        lines.append(
            f"| {name} | {row['visual_tokens']} | {row['select_ms']:.1f} ms | {row['prefill_ms']:.0f} ms | "
            f"{_cell(row['answer']) or '(empty answer)'} |"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text that stays inside one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _whole(value, name: str) -> int:
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


class MethodHandlers:
    """The functions above bound to one loaded model, its calibrated phi_ref and the app's
    answer length: what app.py wires to its components (see the README's demo section)."""

    def __init__(self, vlm, phi_ref: float | None = None, max_new_tokens: int = 48):
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self.vlm = vlm
        self.phi_ref = phi_ref
        self.max_new_tokens = max_new_tokens

    def analyze(self, image, method, budget):
        """The method switch: kept patches of ``method`` at ``budget``, stats JSON, stats table."""
        drawn, stats, table = analyze_method(self.vlm, image, method, budget, self.phi_ref)
        return drawn, stats, table

    def refresh(self, image, method, budget):
        """:meth:`analyze` for events the page fires itself: no image clears the view quietly,
        and a method this model cannot run (the switch left on it by a model switch) clears
        it and says why, instead of an error over the view."""
        if image is None:
            return None, None, ""
        checked_method(method)
        why = unavailable(self.vlm).get(method)
        if why is not None:
            return None, None, f"{why}: pick another method."
        return self.analyze(image, method, budget)

    def compare(self, image, question, budget):
        """"Compare methods": the sheet of kept patches, the answers table, the rows as JSON."""
        return compare_methods(self.vlm, image, question, budget, self.phi_ref, self.max_new_tokens)
