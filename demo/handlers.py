"""The app's event handlers: plain functions of the control values.

Every handler turns bad input into ``gr.Error`` with the library's own message, so a user
sees what was wrong and the server keeps serving everybody else. Every handler reads its
image through :func:`demo.files.read_image_bytes`: only files the app was given.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections import OrderedDict
from typing import Iterator

import gradio as gr

import viz
from demo.files import allowed_path, example_images, read_image_bytes, requested_path  # noqa: F401  (example_images: app.py)
from prunesid import PruneSID
from prunesid.vlm import VLM
from viz.explain import explain_patch, locate

GROUPING_CHOICES = ["psca", "kmeans", "random"]
MAX_NEW_TOKENS_LIMIT = 512  # whatever the command line says: one answer cannot hold a worker for long
# The controls as the page labels them, for error messages.
CONTROL_NAMES = {"budget": "N (budget)", "groups": "K (groups)", "lam": "λ (lam)"}


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

    def __init__(self, vlm: VLM, phi_ref: float | None = None, max_new_tokens: int = 96):
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be an integer in [1, {MAX_NEW_TOKENS_LIMIT}], got {max_new_tokens!r}")
        self.vlm = vlm
        self.phi_ref = phi_ref
        self.max_new_tokens = max_new_tokens  # per answer: enough for a demo, bounded for a shared server
        self._uncompressed: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    # --- settings ----------------------------------------------------------------------

    def press(self, budget, groups, lam, grouping, dynamic) -> PruneSID:
        """Controls -> a press; 0 for K or lambda means "auto" (N/4, N/32)."""
        budget = _whole(budget, "budget")
        groups = _whole(groups, "groups")
        if grouping not in GROUPING_CHOICES:
            raise ValueError(f"grouping must be one of {GROUPING_CHOICES}, got {grouping!r}")
        lam = 0.0 if lam in (None, "") else _finite(lam, "lam")
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

    def encode(self, image):
        """The cached encoding of the image an event names (only files the app was given)."""
        return self.vlm.encode(read_image_bytes(image))

    # --- analyze: the overlays ------------------------------------------------------------

    def analyze(self, image, budget, groups, lam, grouping, dynamic):
        """Overlays (groups, survivors, kept), the per-group budget chart of the first view
        and the stats of one image's selection."""
        press = self.press(budget, groups, lam, grouping, dynamic)
        encoded = self.encode(image)
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

    def uncompressed_tokens(self, encoded) -> int:
        """Visual tokens the unmodified model feeds its LLM for this image (with LLaVA-NeXT's
        newline tokens), computed once per image."""
        with self._lock:
            if encoded.key in self._uncompressed:
                return self._uncompressed[encoded.key]
        count = len(self.vlm.visual_features(encoded, None))
        with self._lock:
            self._uncompressed[encoded.key] = count
            while len(self._uncompressed) > 256:
                self._uncompressed.popitem(last=False)
        return count

    def stats(self, encoded, selection, press: PruneSID, timings: dict) -> dict:
        visual_tokens = len(self.vlm.visual_features(encoded, selection))
        uncompressed = self.uncompressed_tokens(encoded)
        per_view = viz.selection_stats(selection, timings)
        # One definition of compression in the demo (below); not the per-view table's own.
        per_view.pop("compression", None)
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
            "visual_tokens_uncompressed": uncompressed,
            # What the unmodified model feeds the LLM over what the compressed one feeds.
            "compression": round(uncompressed / max(visual_tokens, 1), 2),
            "grouping": press.grouping,
            "timings_ms": {name: round(value, 1) for name, value in timings.items()},
            "per_view": per_view,
        }

    def compare_groupings(self, image, budget, groups, lam, dynamic):
        """The three groupings side by side on the same image and budget."""
        encoded = self.encode(image)
        selections = {
            name: self.vlm.select(encoded, self.press(budget, groups, lam, name, dynamic))[0] for name in GROUPING_CHOICES
        }
        return viz.compare(encoded.image, selections, encoded.grids, layer="kept")

    # --- why was this patch dropped? ---------------------------------------------------------

    def explain(self, image, budget, groups, lam, grouping, dynamic, x, y) -> tuple[str, dict | None]:
        """Why the patch under pixel (x, y) of an overlay (groups, survivors or kept: they
        share one layout) was kept or dropped: markdown and the numbers as a dict."""
        if image is None:
            return "", None
        x, y = _whole(x, "x"), _whole(y, "y")
        press = self.press(budget, groups, lam, grouping, dynamic)
        encoded = self.encode(image)
        selection = self.vlm.select(encoded, press)[0]
        where = locate(encoded.image, encoded.grids, x, y)
        if where.patch is None:
            return where.markdown(), where.to_dict()
        explanation = explain_patch(selection, encoded.features, where.view, where.patch, encoded.grids)
        return explanation.markdown(), explanation.to_dict()

    def explain_click(self, image, budget, groups, lam, grouping, dynamic, evt: gr.SelectData):
        """The overlay's select event: ``evt.index`` is the clicked pixel (x, y)."""
        index = getattr(evt, "index", None)
        if not isinstance(index, (list, tuple)) or len(index) != 2:
            raise ValueError(f"the click carried no pixel position, got {index!r}")
        return self.explain(image, budget, groups, lam, grouping, dynamic, index[0], index[1])

    # --- chat ----------------------------------------------------------------------------

    def chat(self, message, history, image, budget, groups, lam, grouping, dynamic) -> Iterator[tuple]:
        """Stream the compressed model's answer into the chat history; when it is done,
        refresh the stats with the measured prefill. Stateless: the API's chat."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the message is empty: type a question about the image")
        history = list(history or [])
        history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        for answer, done in self.answer_stream(_conversation(history[:-2], message), image, (budget, groups, lam, grouping, dynamic)):
            if done is None:
                history[-1] = {"role": "assistant", "content": answer}
                yield history, "generating...", gr.skip(), gr.skip()
            else:
                info, stats = done
                history[-1] = {"role": "assistant", "content": answer}
                yield history, info, stats, stats_markdown(stats)

    def answer_stream(self, conversation: list[dict], image, controls: tuple, stop: threading.Event | None = None):
        """Yields ``(answer so far, None)`` while generating, then ``(answer, (info, stats))``.
        ``stop``, when set, ends the answer early (what is generated so far is kept)."""
        press = self.press(*controls)
        data = read_image_bytes(image)
        encoded = self.vlm.encode(data)
        kwargs = {}
        if stop is not None:
            kwargs["stopping_criteria"] = _stopping_criteria(stop)
        stream = self.vlm.stream(data, conversation, press=press, max_new_tokens=self.max_new_tokens, **kwargs)
        answer = ""
        for piece in stream:
            answer += piece
            yield answer, None
        reply = stream.reply
        text = reply.text or ("" if stop is not None and stop.is_set() else "(empty answer)")
        timings = {"vision_ms": encoded.vision_ms, "select_ms": reply.timings["select_ms"], "prefill_ms": reply.timings["prefill_ms"]}
        stats = self.stats(encoded, reply.selections[0], press, timings)
        yield text, (reply_markdown(reply), stats)

    def queued_answer(self, history: list, message: str, image, controls: tuple, stop: threading.Event):
        """One queued question of the page's chat (demo/chat.py): as :meth:`answer_stream`."""
        return self.answer_stream(_conversation(history, message), image, controls, stop)

    def check_question(self, image, controls: tuple) -> None:
        """What can be checked at once when a question is sent: the controls and the file."""
        self.press(*controls)
        allowed_path(requested_path(image))

    def compare_answers(self, message, image, budget, groups, lam, grouping, dynamic):
        """All visual tokens vs the compressed ones: both answers and the measured prefill speedup."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("the question is empty: type a question about the image")
        press = self.press(budget, groups, lam, grouping, dynamic)
        data = read_image_bytes(image)
        self.vlm.encode(data)
        full = self.vlm.chat(data, message, press=None, max_new_tokens=self.max_new_tokens)
        compressed = self.vlm.chat(data, message, press=press, max_new_tokens=self.max_new_tokens)
        speedup = full.timings["prefill_ms"] / max(compressed.timings["prefill_ms"], 1e-6)
        summary = (
            f"Prefill with **{full.visual_tokens[0]}** visual tokens: {full.timings['prefill_ms']:.0f} ms; "
            f"with **{compressed.visual_tokens[0]}**: {compressed.timings['prefill_ms']:.0f} ms "
            f"(**{speedup:.2f}x** faster, prompt {full.prompt_tokens} -> {compressed.prompt_tokens} tokens)."
        )
        return full.text, compressed.text, summary


def _stopping_criteria(stop: threading.Event):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopWhenAsked()])


def _finite(value, name: str) -> float:
    """A control's value as a finite float, or a ValueError naming the control."""
    label = CONTROL_NAMES.get(name, name)
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a number ({label}), got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ({label}), got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number ({label}), got {value!r}")
    return number


def _whole(value, name: str) -> int:
    number = _finite(value, name)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number ({CONTROL_NAMES.get(name, name)}), got {value!r}")
    return int(number)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") or ""
    if isinstance(content, (list, tuple)):
        return " ".join(_text_of(part) for part in content)
    return ""


def _conversation(history: list, message: str, media: str = "image") -> list[dict]:
    """Gradio chat history + the new message -> chat messages; the image (or the clip, with
    ``media="video"``) rides on the first user turn."""
    messages, placed = [], False
    for turn in history:
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ("user", "assistant"):
            continue
        text = _text_of(turn.get("content"))
        if role == "user" and not placed:
            messages.append({"role": "user", "content": [{"type": media}, {"type": "text", "text": text}]})
            placed = True
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    content = [{"type": "text", "text": message}]
    messages.append({"role": "user", "content": content if placed else [{"type": media}] + content})
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
        (
            "Visual tokens to the LLM",
            f"{stats['visual_tokens']} of {stats['visual_tokens_uncompressed']} (compression {stats['compression']}x)",
        ),
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
