"""A clip the browser can play: an upload whose codec browsers do not decode (MPEG-4 Part 2,
MJPEG, FFV1, ...) is re-encoded to VP8 WebM with PyAV, at its own size, frame count and
frame rate, so the page's player shows it and the analysis of the copy samples the same
frames. The work is bounded before it starts (frames x pixels, the decode limits of
prunesid/limits.py) and by time while it runs; a clip beyond them is left as it is (the frame
strips of the analysis still show its sampled frames).
"""

from __future__ import annotations

import os
import tempfile
import time
from fractions import Fraction

from prunesid.limits import DECODE_SECONDS, MAX_DECODED_FRAMES, MAX_FRAME_PIXELS

BROWSER_CODECS = {"h264", "vp8", "vp9", "av1"}  # what Chromium and Firefox decode in MP4 / WebM
MAX_TRANSCODE_PIXELS = 400_000_000  # frames x pixels one re-encode may handle (e.g. 1300 frames of 640 x 480)
FALLBACK_RATE = Fraction(25)


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
            picture = frame.reformat(width=even[0], height=even[1], format="yuv420p")
            picture.pts = decoded - 1  # in frames: the encoder counts time in 1/rate
            picture.time_base = tick
            for packet in encoder.encode(picture):
                output.mux(packet)
        for packet in encoder.encode():
            output.mux(packet)
