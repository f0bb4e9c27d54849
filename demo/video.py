"""The app's video handlers: a clip through Video-LLaVA with PruneSID on every frame.

Plain functions of the control values, no layout (app.py wires them): ``analyze_video``
draws the frame strips (kept, groups, survivors: every frame with its own selection), the
per-frame chart of rho / phi / N' and the stats; ``chat_video`` streams an answer about the
clip. Files are read only when the app was given them: uploads in Gradio's upload folder
(checked by demo/files.py) or the bundled example clips in ``assets/``.

The app serves clips with the model its visitor picked, when that model takes clips
(demo/models.py; ``$PRUNESID_VIDEO_MODEL`` adds a model to the picker). :func:`choose_video_model`
picks one for other uses: the given model when it takes videos, else ``$PRUNESID_VIDEO_MODEL``,
else the offline built-in ``tiny-random-video-llava`` (random weights: its answers are noise,
its selections are real).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Iterator

from demo.files import ASSETS, RefusedFile, allowed_path, named_path
from demo.conversation import answers, chat_history, chat_turns, conversation, question, reply_timings
from demo.handlers import Handlers
from demo.controls import Controls
from demo.limits import MAX_UPLOAD_BYTES
from demo.stats import clip_stats, video_stats_markdown
from prunesid import PruneSID, load_vlm
from prunesid.video import is_video, load_video
from prunesid.vlm import VLM
from viz.frames import frames_per_view, render_frame_chart, render_frame_layers

VIDEO_MODEL_ENV = "PRUNESID_VIDEO_MODEL"
OFFLINE_VIDEO_MODEL = "tiny-random-video-llava"
DEFAULT_FRAME_BUDGET = 17  # the paper's Video-LLaVA setting: 256 -> 17 tokens per frame
EXAMPLE_VIDEO_SUFFIXES = (".mp4", ".webm")
MAX_VIDEO_BYTES = MAX_UPLOAD_BYTES  # per upload, as for images (app.py's max_file_size)
VIDEO_REFUSED = "this video was not uploaded to this app: upload a clip or pick the example"


def example_videos() -> list[str]:
    return sorted(str(path) for path in ASSETS.iterdir() if path.suffix.lower() in EXAMPLE_VIDEO_SUFFIXES)


def choose_video_model(main: VLM | None = None) -> tuple[VLM, str]:
    """The model the video handlers use, and a sentence saying which and why."""
    if main is not None and main.family.num_frames is not None:
        return main, f"Video: {main.name}, the app's model."
    name = os.environ.get(VIDEO_MODEL_ENV, "").strip()
    if name:
        return load_vlm(name), f"Video: {name} (from ${VIDEO_MODEL_ENV})."
    return load_vlm(OFFLINE_VIDEO_MODEL), (
        f"Video: {OFFLINE_VIDEO_MODEL}, Video-LLaVA's geometry with random weights (set ${VIDEO_MODEL_ENV} to "
        "LanguageBind/Video-LLaVA-7B-hf on a GPU): its answers are noise, the per-frame selections are real."
    )


def allowed_clip(video) -> str:
    """The resolved path of the clip an event names (FileData dict or path) if the app was
    given it (an upload or a bundled example); ValueError otherwise. Nothing is read."""
    if isinstance(video, dict) and isinstance(video.get("video"), dict):  # Gradio's VideoData shape
        video = video["video"]
    path = named_path(video, "no video: upload a clip or pick the example", lambda: ValueError(VIDEO_REFUSED))
    resolved = os.path.realpath(path) if os.path.isabs(path) and "\x00" not in path else None
    if resolved is None or resolved not in {os.path.realpath(example) for example in example_videos()}:
        try:
            resolved = allowed_path(path)  # inside Gradio's upload folder
        except RefusedFile:
            raise ValueError(VIDEO_REFUSED) from None
    return resolved


def read_video_bytes(video, max_bytes: int = MAX_VIDEO_BYTES) -> bytes:
    """The bytes of the clip an event names (FileData dict or path), if the app was given it."""
    resolved = allowed_clip(video)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(resolved, flags)
    except OSError:
        raise ValueError(VIDEO_REFUSED) from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(VIDEO_REFUSED)
        if info.st_size > max_bytes:
            raise ValueError(f"the video file is {info.st_size / 2**20:.1f} MB; the largest accepted is {max_bytes / 2**20:.0f} MB")
        return handle.read(max_bytes + 1)


class VideoHandlers:
    """Binds the video handlers to one model that takes videos."""

    def __init__(self, vlm: VLM, max_new_tokens: int = 96, note: str = ""):
        if vlm.family.num_frames is None:
            raise ValueError(f"{vlm.name} takes images only; the video handlers need a video model such as {OFFLINE_VIDEO_MODEL}")
        self.vlm = vlm
        self.note = note
        self.max_new_tokens = Handlers(vlm, max_new_tokens=max_new_tokens).max_new_tokens  # checked as for images

    @classmethod
    def for_app(cls, main: VLM | None = None, max_new_tokens: int = 96) -> "VideoHandlers":
        vlm, note = choose_video_model(main)
        return cls(vlm, max_new_tokens=max_new_tokens, note=note)

    @staticmethod
    def press(controls: Controls) -> PruneSID:
        """The controls' press (N per frame, read with demo/controls.py's ``clip_widgets``);
        with the dynamic budget the frames share frames x N exactly (phi_ref = the clip's mean phi)."""
        return controls.press(phi_ref=None)

    def encode(self, video):
        """The cached encoding of the clip an event names (only files the app was given)."""
        data = read_video_bytes(video)
        if not is_video(data):  # no known container signature: PyAV decides (or says why not)
            return self.vlm.encode(load_video(data, num_frames=self.vlm.family.num_frames))
        return self.vlm.encode(data)

    # --- analyze_video: the frame strips, the chart and the stats ------------------------------

    def analyze_video(self, video, controls):
        """Frame strips (groups, survivors, kept), the per-frame chart of rho / phi / N' and
        the stats (dict and markdown) of one clip's per-frame selection."""
        press = self.press(controls)
        encoded = self.encode(video)
        start = time.perf_counter()
        selection = self.vlm.compress(encoded, press)[0]
        select_ms = (time.perf_counter() - start) * 1000
        clip = encoded.video
        frames, timestamps = frames_per_view(list(clip.frames), list(clip.timestamps), encoded.num_views)
        start = time.perf_counter()
        layers = render_frame_layers(frames, selection, encoded.grids, timestamps)
        chart = render_frame_chart(selection, timestamps, budget=press.budget)
        render_ms = (time.perf_counter() - start) * 1000
        stats = clip_stats(self.vlm, encoded, selection, press, {"vision_ms": encoded.vision_ms, "select_ms": select_ms, "render_ms": render_ms})
        return layers["groups"], layers["survivors"], layers["kept"], chart, stats, video_stats_markdown(stats)

    def refresh_video(self, video, controls):
        """As :meth:`analyze_video`, for events the page fires itself: no clip clears the outputs."""
        if video is None:
            return None, None, None, None, None, ""
        return self.analyze_video(video, controls)

    # --- chat about the clip -----------------------------------------------------------------

    def chat_video(self, message, history, video, controls) -> Iterator[tuple]:
        """Stream the compressed model's answer about the clip into the chat history; when
        done, yield the reply's numbers and the stats. Stateless: the API's video chat."""
        question(message, "message", "type a question about the clip")
        history = chat_history(history)
        yield from chat_turns(message, history, self.queued_answer(history, message, video, controls), video_stats_markdown)

    def queued_answer(self, history: list, message: str, video, controls: Controls, stop: threading.Event | None = None):
        """One queued question of the page's clip chat (demo/chat.py, the image chat's queue):
        yields ``(answer so far, None)``, then ``(answer, (info, stats))``; ``stop``, when set,
        ends the answer early (what is generated so far is kept)."""
        press = self.press(controls)
        encoded = self.encode(video)

        def finished(reply):
            stats = clip_stats(self.vlm, encoded, reply.selections[0], press, reply_timings(encoded, reply))
            return self.reply_info(reply, stats), stats

        yield from answers(self.vlm, encoded.video, video_conversation(history, message), press, self.max_new_tokens, stop, finished)

    @staticmethod
    def reply_info(reply, stats: dict) -> str:
        return (
            f"{reply.visual_tokens[0]} video tokens ({stats['frames']} frames) of {stats['visual_tokens_uncompressed']} · "
            f"prefill {reply.timings['prefill_ms']:.0f} ms · decode {reply.timings['decode_ms']:.0f} ms "
            f"({int(reply.timings['new_tokens'])} tokens)"
        )


def check_clip_question(video, controls: Controls) -> None:
    """The clip chat's check when a question is sent (the controls are read already): the
    clip file, model-independent."""
    allowed_clip(video)


def video_conversation(history: list, message: str) -> list[dict]:
    """Gradio chat history + the new message -> chat messages; the clip rides on the first turn."""
    return conversation(history, message, media="video")




__all__ = [
    "DEFAULT_FRAME_BUDGET", "VideoHandlers", "allowed_clip", "check_clip_question", "choose_video_model", "example_videos", "read_video_bytes",
    "video_conversation", "video_stats_markdown",
]
