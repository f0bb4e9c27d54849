"""The app's event handlers: plain functions of the control values.

Every handler turns bad input into ``gr.Error`` with the library's own message, so a user
sees what was wrong and the server keeps serving everybody else.
"""

from __future__ import annotations

import functools
import inspect
import time
from pathlib import Path
from typing import Iterator

import gradio as gr

import viz
from prunesid import PruneSID
from prunesid.vlm import VLM

GROUPING_CHOICES = ["psca", "kmeans", "random"]
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def example_images() -> list[str]:
    return sorted(str(path) for path in ASSETS.iterdir() if path.suffix.lower() in (".png", ".jpg", ".jpeg"))


def user_errors(function):
    """Show ValueError / TypeError from the library as a visible gr.Error (keeps the
    signature, so the API's parameter names stay the handler's)."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def streamed(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except (ValueError, TypeError) as error:
                raise gr.Error(str(error), title="Cannot do that") from error

        return streamed

    @functools.wraps(function)
    def returned(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error), title="Cannot do that") from error

    return returned


class Handlers:
    """Binds the handlers to one loaded model and its calibrated phi_ref."""

    max_new_tokens = 96  # per answer: enough for a demo, bounded for a shared GPU

    def __init__(self, vlm: VLM, phi_ref: float | None = None):
        self.vlm = vlm
        self.phi_ref = phi_ref

    # --- settings ----------------------------------------------------------------------

    def press(self, budget, groups, lam, grouping, dynamic) -> PruneSID:
        """Controls -> a press; 0 for K or lambda means "auto" (N/4, N/32)."""
        budget = _whole(budget, "budget")
        groups = _whole(groups, "groups")
        if grouping not in GROUPING_CHOICES:
            raise ValueError(f"grouping must be one of {GROUPING_CHOICES}, got {grouping!r}")
        lam = float(lam) if lam not in (None, "") else 0.0
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0 (0 = auto: budget / 32), got {lam!r}")
        return PruneSID(
            budget=budget,
            groups=groups or None,
            lam=lam if lam > 0 else None,
            grouping=grouping,
            dynamic=bool(dynamic),
            phi_ref=self.phi_ref if dynamic else None,
        )

    def _encode(self, image):
        return self.vlm.encode(image_path(image))

    # --- analyze: the overlays ------------------------------------------------------------

    def analyze(self, image, budget, groups, lam, grouping, dynamic):
        """Overlays (groups, survivors, kept), the per-group budget chart of the first view
        and the stats of one image's selection."""
        press = self.press(budget, groups, lam, grouping, dynamic)
        encoded = self._encode(image)
        start = time.perf_counter()
        selection = self.vlm.select(encoded, press)[0]
        select_ms = (time.perf_counter() - start) * 1000
        layers = viz.render_all(encoded.image, selection, encoded.grids)
        stats = self.stats(encoded, selection, press, {"vision_ms": encoded.vision_ms, "select_ms": select_ms})
        quotas = viz.render_quotas(selection, view=0)
        return layers["groups"], layers["survivors"], layers["kept"], quotas, stats, stats_markdown(stats)

    def refresh(self, image, budget, groups, lam, grouping, dynamic):
        """Like :meth:`analyze`, for events fired by the page itself: a cleared image (or
        none yet) clears the overlays instead of raising an error at the user."""
        if image is None:
            return None, None, None, None, None, ""
        return self.analyze(image, budget, groups, lam, grouping, dynamic)

    def stats(self, encoded, selection, press: PruneSID, timings: dict) -> dict:
        visual_tokens = int(self.vlm.visual_features(encoded, selection).shape[0])
        per_view = viz.selection_stats(selection, timings)
        first = selection.to_dict(0)
        kept = sum(int(index.numel()) for index in selection.indices)
        return {
            "model": self.vlm.name,
            "tokens": encoded.num_tokens,
            "views": encoded.num_views,
            "budget": press.budget,
            "budget_used": [int(n) for n in selection.budget.tolist()],
            "dynamic": press.dynamic,
            "phi_ref": selection.phi_ref,
            "groups": first["num_groups"],
            "groups_auto": press.groups is None,
            "lam": first["lam"],
            "lam_auto": press.lam is None,
            "rho": first["rho"],
            "phi": first["phi"],
            "tau": first["tau"],
            "kept": kept,
            "kept_per_group": first["quotas"],
            "survivors": first["survivors"],
            "reserved": selection.reserved,
            "visual_tokens": visual_tokens,
            "compression": round(encoded.num_tokens / max(visual_tokens, 1), 2),
            "grouping": press.grouping,
            "timings_ms": {name: round(value, 1) for name, value in timings.items()},
            "per_view": per_view,
        }

    def compare_groupings(self, image, budget, groups, lam, dynamic):
        """The three groupings side by side on the same image and budget."""
        encoded = self._encode(image)
        selections = {
            name: self.vlm.select(encoded, self.press(budget, groups, lam, name, dynamic))[0] for name in GROUPING_CHOICES
        }
        return viz.compare(encoded.image, selections, encoded.grids, layer="kept")

    # --- chat ----------------------------------------------------------------------------

    def chat(self, message, history, image, budget, groups, lam, grouping, dynamic) -> Iterator[tuple]:
        """Stream the compressed model's answer into the chat history; when it is done,
        refresh the stats with the measured prefill."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the message is empty: type a question about the image")
        press = self.press(budget, groups, lam, grouping, dynamic)
        encoded = self._encode(image)
        history = list(history or [])
        conversation = _conversation(history, message)
        stream = self.vlm.stream(image_path(image), conversation, press=press, max_new_tokens=self.max_new_tokens)
        history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        answer = ""
        for piece in stream:
            answer += piece
            history[-1] = {"role": "assistant", "content": answer}
            yield history, "generating...", gr.skip(), gr.skip()
        reply = stream.reply
        history[-1] = {"role": "assistant", "content": reply.text or "(empty answer)"}
        timings = {"vision_ms": encoded.vision_ms, "select_ms": reply.timings["select_ms"], "prefill_ms": reply.timings["prefill_ms"]}
        stats = self.stats(encoded, reply.selections[0], press, timings)
        yield history, reply_markdown(reply), stats, stats_markdown(stats)

    def compare_answers(self, message, image, budget, groups, lam, grouping, dynamic):
        """All visual tokens vs the compressed ones: both answers and the measured prefill speedup."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the question is empty: type a question about the image")
        press = self.press(budget, groups, lam, grouping, dynamic)
        path = image_path(image)
        self._encode(path)
        full = self.vlm.chat(path, message, press=None, max_new_tokens=self.max_new_tokens)
        compressed = self.vlm.chat(path, message, press=press, max_new_tokens=self.max_new_tokens)
        speedup = full.timings["prefill_ms"] / max(compressed.timings["prefill_ms"], 1e-6)
        summary = (
            f"Prefill with **{full.visual_tokens[0]}** visual tokens: {full.timings['prefill_ms']:.0f} ms; "
            f"with **{compressed.visual_tokens[0]}**: {compressed.timings['prefill_ms']:.0f} ms "
            f"(**{speedup:.2f}x** faster, prompt {full.prompt_tokens} -> {compressed.prompt_tokens} tokens)."
        )
        return full.text, compressed.text, summary


def image_path(image) -> str:
    """The uploaded file's path. Events run with ``preprocess=False`` so that the library,
    not Gradio's PIL preprocessing, judges the file and words the error."""
    if image is None:
        raise ValueError("no image: upload one or pick an example")
    path = image.get("path") if isinstance(image, dict) else image
    if not isinstance(path, str) or not path:
        raise ValueError(f"the image input is not a file upload: {image!r}")
    return path


def _whole(value, name: str) -> int:
    if value is None or isinstance(value, bool) or float(value) != int(float(value)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(float(value))


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") or ""
    if isinstance(content, (list, tuple)):
        return " ".join(_text_of(part) for part in content)
    return ""


def _conversation(history: list, message: str) -> list[dict]:
    """Gradio chat history + the new message -> chat messages; the image rides on the first turn."""
    messages, image_placed = [], False
    for turn in history:
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ("user", "assistant"):
            continue
        text = _text_of(turn.get("content"))
        if role == "user" and not image_placed:
            messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
            image_placed = True
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    content = [{"type": "text", "text": message}]
    messages.append({"role": "user", "content": content if image_placed else [{"type": "image"}] + content})
    return messages


def stats_markdown(stats: dict) -> str:
    budget = f"{stats['budget']}"
    if stats["dynamic"]:
        budget += f" → N' = {', '.join(map(str, stats['budget_used']))} (phi_ref {stats['phi_ref']:.3f})"
    auto = lambda flag: " (auto)" if flag else ""
    timings = ", ".join(f"{name.removesuffix('_ms')} {value:.0f} ms" for name, value in stats["timings_ms"].items())
    rows = [
        ("Patch tokens T", f"{stats['tokens']}" + (f" in {stats['views']} views" if stats["views"] > 1 else "")),
        ("Budget N" + (" / N'" if stats["dynamic"] else ""), budget),
        ("Groups K", f"{stats['groups']}{auto(stats['groups_auto'])}"),
        ("λ", f"{stats['lam']:.3g}{auto(stats['lam_auto'])}"),
        ("Redundancy ρ", f"{stats['rho']:.3f}"),
        ("Information φ = 1 − ρ", f"{stats['phi']:.3f}"),
        ("NMS threshold τ = λρ", f"{stats['tau']:.3f}"),
        ("NMS survivors", f"{stats['survivors']}"),
        ("Kept patches", f"{stats['kept']}" + (" + CLS" if stats["reserved"] else "")),
        ("Kept per group", ", ".join(map(str, stats["kept_per_group"]))),
        ("Visual tokens to the LLM", f"{stats['visual_tokens']} (compression {stats['compression']}x)"),
        ("Timings", timings),
    ]
    lines = ["| Quantity | Value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def reply_markdown(reply) -> str:
    timings = reply.timings
    return (
        f"{reply.visual_tokens[0]} visual tokens · vision {timings['vision_ms']:.0f} ms · select "
        f"{timings['select_ms']:.0f} ms · prefill {timings['prefill_ms']:.0f} ms · decode "
        f"{timings['decode_ms']:.0f} ms ({int(timings['new_tokens'])} tokens)"
    )
