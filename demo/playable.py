"""A clip the browser can play: an upload whose codec browsers do not decode (MPEG-4 Part 2,
MJPEG, FFV1, ...) is re-encoded to VP8 WebM with PyAV, at its own size, frame count and
frame rate, so the page's player shows it and the analysis of the copy samples the same
frames. The work is bounded before it starts (frames x pixels, the decode limits of
prunesid/limits.py) and by time while it runs; the decoder refuses any frame over
``MAX_FRAME_PIXELS`` (FFmpeg's ``max_pixels``), and a frame whose size differs from the
header's stops the copy (an MJPEG header can lie about every later frame). A clip beyond
them is left as it is (the frame strips of the analysis still show its sampled frames).

The copies are written to one folder of their own (:func:`copies_folder`); :func:`served_copy`
deletes each once the request that made it has handed it over, and any left behind by an
interrupted request once it is ``STALE_COPY_S`` old.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from fractions import Fraction

from prunesid.limits import DECODE_SECONDS, MAX_DECODED_FRAMES, MAX_FRAME_PIXELS

BROWSER_CODECS = {"h264", "vp8", "vp9", "av1"}  # what Chromium and Firefox decode in MP4 / WebM
MAX_TRANSCODE_PIXELS = 400_000_000  # frames x pixels one re-encode may handle (e.g. 1300 frames of 640 x 480)
FALLBACK_RATE = Fraction(25)
STALE_COPY_S = 600.0  # a copy still there after this long was left by an interrupted request


def copies_folder() -> str:
    folder = os.path.join(tempfile.gettempdir(), "prunesid-playable")
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def served_copy(path: str):
    """The playable copy of ``path`` (None when none is needed or possible), deleted on exit."""
    folder = copies_folder()
    _delete_stale(folder)
    copy = playable_copy(path, folder=folder)
    try:
        yield copy
    finally:
        if copy is not None:
            with contextlib.suppress(OSError):
                os.unlink(copy)


def _delete_stale(folder: str) -> None:
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > STALE_COPY_S:
                    os.unlink(entry.path)


def codec_of(path: str) -> str | None:
    """The video codec's name (no frame decoded), None when the file has no video stream."""
    import av

    with av.open(path) as container:
        streams = container.streams.video
        return streams[0].codec_context.name if streams else None


def playable_copy(path: str, folder: str | None = None) -> str | None:
    """A VP8 WebM copy of the clip at ``path`` when browsers cannot play its codec and the
    copy fits the limits; None when the clip plays as it is or cannot be re-encoded in bounds."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.codec_context.name in BROWSER_CODECS:
                return None
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = stream.frames or 0
            if frames == 0 and stream.duration and stream.time_base:
                frames = int(float(stream.duration * stream.time_base) * float(stream.average_rate or FALLBACK_RATE)) + 1
            if (not width or not height or width * height > MAX_FRAME_PIXELS or not 0 < frames <= MAX_DECODED_FRAMES
                    or frames * width * height > MAX_TRANSCODE_PIXELS):
                return None
            rate = stream.average_rate or FALLBACK_RATE
            # The decoder refuses a frame over the limit before allocating it, whatever the header says.
            stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
            handle, target = tempfile.mkstemp(suffix=".webm", dir=folder)
            os.close(handle)
            try:
                _encode(container, stream, target, rate, width, height, frames)
            except Exception:
                os.unlink(target)
                return None
            return target
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def _encode(container, stream, target: str, rate, width: int, height: int, frames: int) -> None:
    import av

    deadline = time.monotonic() + DECODE_SECONDS
    even = (width - width % 2, height - height % 2)  # VP8 with 4:2:0 chroma wants even sides
    with av.open(target, "w", format="webm") as output:
        encoder = output.add_stream("libvpx", rate=rate)
        tick = Fraction(1) / Fraction(rate)
        encoder.codec_context.time_base = tick
        encoder.width, encoder.height = even
        encoder.pix_fmt = "yuv420p"
        encoder.bit_rate = max(1_000_000, even[0] * even[1] * 8)
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        decoded = 0
        for frame in container.decode(stream):
            decoded += 1
            if decoded > frames + 1 or time.monotonic() > deadline:
                raise ValueError("the clip takes longer to re-encode than allowed")
            if (frame.width, frame.height) != (width, height):
                raise ValueError("a frame's size differs from the clip's header")
            picture = frame.reformat(width=even[0], height=even[1], format="yuv420p")
            picture.pts = decoded - 1  # in frames: the encoder counts time in 1/rate
            picture.time_base = tick
            for packet in encoder.encode(picture):
                output.mux(packet)
        for packet in encoder.encode():
            output.mux(packet)
