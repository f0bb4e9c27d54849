"""Video clips for video VLMs: the few frames a model sees, read with PyAV.

:func:`load_video` samples ``num_frames`` frames uniformly over the clip, the first and the
last included (``round(linspace(0, n - 1, num_frames))``, the rule Video-LLaVA samples its 8
frames by). Given a :class:`FrameRate` instead, the count follows the clip's length as
Qwen-VL's processors sample: ``fps`` frames a second (2 by default), within
``[min_frames, max_frames]``, rounded down to a multiple of the temporal patch (2), so the
sampled rate (hence Qwen2.5-VL's ``second_per_grid_ts``) is the one actually achieved. Either
way it decodes only what it needs for the sampled frames:

1. one demux pass reads the packets' timestamps and keyframe flags, without decoding, so
   the frame count is exact even where the header does not say it;
2. for each sampled frame the decoder seeks to the keyframe before it and decodes forward
   to it (continuing instead when that keyframe is behind the decoder already);
3. only the sampled frames are converted to RGB and kept.

Hostile clips are bounded (the limits live in prunesid/limits.py): the decoder itself refuses
any frame over ``MAX_FRAME_PIXELS`` (FFmpeg's ``max_pixels``, so a header that lies about
later frames does not matter), every decoded frame's size and aspect ratio are checked
before it is converted, the sampled frames are converted at most ``FRAME_LONG_SIDE`` long,
and the frames decoded per clip (``MAX_DECODED_FRAMES``) and the decoding time
(``DECODE_SECONDS``) are bounded whatever the keyframe layout. Memory is then the timestamp
list (at most ``MAX_CLIP_FRAMES`` numbers), one decoded frame, and the kept frames
(``num_frames`` x 1344 x 1344 x 3 bytes at most: 43 MB for 8 frames). Every problem is a
``ValueError`` that names it: a missing, empty, non-video or damaged file, a still image, a
file without a video stream, and clips over the limits.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from prunesid.images import load_image
from prunesid.limits import (
    DECODE_SECONDS, FRAME_LONG_SIDE, MAX_ASPECT, MAX_CLIP_FRAMES, MAX_DECODED_FRAMES, MAX_DURATION_S, MAX_FRAME_PIXELS,
    MAX_SAMPLED_FRAMES, MIN_SIDE,
)
from prunesid.limits import MAX_VIDEO_FILE_BYTES as MAX_FILE_BYTES

DEFAULT_FRAMES = 8  # Video-LLaVA


@dataclass(frozen=True)
class FrameRate:
    """Sample a clip at ``fps`` frames a second of its length, as Qwen-VL's processors
    (and qwen-vl-utils) do: ``count = floor(min(max(seconds x fps, min_frames), max_frames,
    clip frames) / multiple) x multiple``, at least ``multiple`` (a shorter clip repeats
    frames, as uniform sampling does). ``max_frames`` is at most ``MAX_SAMPLED_FRAMES``:
    whatever the clip's length, no more frames are decoded and kept than for a fixed count."""

    fps: float = 2.0  # frames per second of the clip (Qwen-VL's processors' default)
    min_frames: int = 4  # Qwen-VL's processors' minimum
    max_frames: int = 32  # lmms-eval's Qwen-VL classes take at most 32 frames
    multiple: int = 2  # the temporal patch: frames go to the model in pairs

    def __post_init__(self):
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps <= 60:
            raise ValueError(f"fps must be a number of frames per second in (0, 60], got {self.fps!r}")
        for name in ("min_frames", "max_frames", "multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SAMPLED_FRAMES:
                raise ValueError(f"{name} must be an integer in [1, {MAX_SAMPLED_FRAMES}], got {value!r}")
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) must not exceed max_frames ({self.max_frames})")
        if self.max_frames < self.multiple:
            raise ValueError(f"max_frames ({self.max_frames}) must hold at least one group of {self.multiple} frames")

    def count(self, total_frames: int, clip_fps: float | None, duration: float | None = None) -> int:
        """Frames to sample from a clip of ``total_frames`` frames at ``clip_fps`` (its
        ``duration`` in seconds where the rate is unknown; neither: ``min_frames``)."""
        seconds = total_frames / clip_fps if clip_fps else duration
        wanted = seconds * self.fps if seconds else self.min_frames
        low = -(-self.min_frames // self.multiple) * self.multiple
        high = self.max_frames // self.multiple * self.multiple
        count = int(min(max(wanted, low), high, total_frames) // self.multiple) * self.multiple
        return max(count, self.multiple)

# A file is taken for a video by its name or by its first bytes (the container's signature).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".flv", ".ogv", ".wmv", ".asf", ".3gp", ".3g2",
})
_STILL_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_HEADER_BYTES = 512


@dataclass(eq=False)
class Video:
    """The frames of a clip a model sees, and where they sit in the clip."""

    frames: tuple[Image.Image, ...]  # RGB, all of one size, in clip order
    indices: tuple[int, ...]  # each frame's number in the clip (0-based, presentation order)
    timestamps: tuple[float, ...]  # each frame's time in seconds from the clip's first frame
    total_frames: int  # frames in the clip
    duration: float | None  # seconds, None where unknown
    fps: float | None
    source: str  # what it was read from, for messages
    key: str  # content hash: the VLM's cache key

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.frames[0].size

    @classmethod
    def from_frames(cls, frames, fps: float | None = None, name: str = "video") -> "Video":
        """A clip from frames already in memory (PIL images or H x W x 3 uint8 arrays), all of
        one size; ``fps`` sets their timestamps."""
        if isinstance(frames, (Image.Image, np.ndarray)) and not (isinstance(frames, np.ndarray) and frames.ndim == 4):
            raise TypeError(f"{name} frames must be a sequence of images, got a single {type(frames).__name__}")
        images = [load_image(frame, name=f"{name} frame {i}") for i, frame in enumerate(frames)]
        if not images:
            raise ValueError(f"{name} has no frames")
        if len(images) > MAX_SAMPLED_FRAMES:
            raise ValueError(f"{name} has {len(images)} frames; at most {MAX_SAMPLED_FRAMES} are accepted")
        sizes = {image.size for image in images}
        if len(sizes) > 1:
            raise ValueError(f"{name} frames must all have one size, got {sorted(sizes)}")
        if fps is not None and not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        digest = hashlib.blake2b(digest_size=16)
        for image in images:
            digest.update(image.tobytes())
        digest.update(repr(sizes).encode())
        rate = float(fps) if fps else None
        return cls(
            frames=tuple(images),
            indices=tuple(range(len(images))),
            timestamps=tuple(i / rate if rate else 0.0 for i in range(len(images))),
            total_frames=len(images),
            duration=len(images) / rate if rate else None,
            fps=rate,
            source=f"{len(images)} frames in memory",
            key="frames:" + digest.hexdigest(),
        )


def is_video(source) -> bool:
    """Whether ``source`` is a :class:`Video`, or a file / encoded bytes that is meant as a
    video: a video file name (``VIDEO_SUFFIXES``) or a video container's signature."""
    if isinstance(source, Video):
        return True
    if isinstance(source, (bytes, bytearray)):
        return _video_signature(bytes(source[:_HEADER_BYTES]))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return True
        if path.is_file():
            with open(path, "rb") as handle:
                return _video_signature(handle.read(_HEADER_BYTES))
    return False


def _video_signature(head: bytes) -> bool:
    if head[4:8] == b"ftyp":  # ISO media (MP4, MOV, 3GP) unless a still-image brand (AVIF, HEIC)
        return head[8:12] not in _STILL_IMAGE_BRANDS
    return (
        head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip")  # QuickTime without ftyp
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska, WebM
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:3] == b"FLV"
        or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")  # MPEG program stream, MPEG video
        or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47)  # MPEG transport stream
        or head[:16] == _ASF_GUID  # WMV
        or head[:4] == b"OggS"
    )


def file_key(path) -> str:
    """Content hash of a file, read in chunks (the same key as for its bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "bytes:" + digest.hexdigest()


def load_video(source, num_frames: int | FrameRate = DEFAULT_FRAMES, name: str = "video") -> Video:
    """Read ``num_frames`` frames sampled uniformly from a video file (a path or its bytes);
    a :class:`FrameRate` sets the count from the clip's length (``FrameRate(fps=2.0)``).

    Raises ``ValueError`` naming the problem for: a missing or empty file, a file that is
    not a video PyAV can read, a still image, no video stream, no frames, a damaged stream,
    and clips beyond the limits (``MAX_FILE_BYTES``, ``MAX_DURATION_S``, ``MAX_CLIP_FRAMES``,
    ``MAX_FRAME_PIXELS``; sides under ``MIN_SIDE``). A clip with fewer frames than asked
    repeats frames, as uniform sampling does.
    """
    if not isinstance(num_frames, FrameRate) and (
        isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_SAMPLED_FRAMES
    ):
        raise ValueError(f"num_frames must be an integer in [1, {MAX_SAMPLED_FRAMES}] or a FrameRate, got {num_frames!r}")
    if isinstance(source, Video):
        return source
    opened, description, key = _open_source(source, name)
    key = f"{key}:frames={num_frames}"
    import av

    try:
        container = av.open(opened, mode="r", metadata_errors="ignore")
    except av.FFmpegError as error:
        raise ValueError(
            f"{name} {description} is not a video PyAV can read (MP4, WebM, MKV, MOV, AVI, ...), or it is damaged "
            f"({_reason(error)})"
        ) from error
    try:
        return _sample(container, num_frames, name, description, key)
    except av.FFmpegError as error:  # also a frame the decoder refused for its size (max_pixels)
        raise ValueError(
            f"{name} {description} could not be decoded: it is damaged or holds a frame over the "
            f"{MAX_FRAME_PIXELS / 1e6:.1f} MP accepted ({_reason(error)})"
        ) from error
    except _OverBudget as over:
        if over.frames:
            sampled = f"frames sampled at {num_frames.fps:g} fps" if isinstance(num_frames, FrameRate) else f"{num_frames} sampled ones"
            raise ValueError(
                f"{name} {description} would need more than {MAX_DECODED_FRAMES} frames decoded to reach the "
                f"{sampled} (too few keyframes); please re-encode it with a keyframe every few seconds"
            ) from None
        raise ValueError(
            f"{name} {description} took more than {DECODE_SECONDS:.0f} s to decode; please trim or re-encode it"
        ) from None
    finally:
        container.close()


def _reason(error) -> str:
    """FFmpeg's own words for an error, without the file name the message already gives."""
    return getattr(error, "strerror", None) or str(error)


def _open_source(source, name: str):
    """(what av.open reads, a description for messages, the content key) after the file checks."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        description = f"({len(data)} bytes)"
        if not data:
            raise ValueError(f"{name} {description} is empty")
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"{name} {description} is larger than {MAX_FILE_BYTES // 2**20} MB; please trim or re-encode it")
        return io.BytesIO(data), description, "bytes:" + hashlib.blake2b(data, digest_size=16).hexdigest()
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path, encoded bytes or a prunesid.video.Video, got {type(source).__name__}")
    path = Path(source)
    description = repr(str(path))
    if not path.exists():
        raise ValueError(f"{name} file {description} does not exist")
    if not path.is_file():
        raise ValueError(f"{name} path {description} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{name} file {description} is empty")
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"{name} file {description} is {size / 2**20:.0f} MB; the largest accepted is {MAX_FILE_BYTES // 2**20} MB, "
            "please trim or re-encode it"
        )
    return str(path), description, file_key(path)


def _sample(container, num_frames: int | FrameRate, name: str, description: str, key: str) -> Video:
    format_name = container.format.name or ""
    if format_name == "image2" or format_name.endswith("_pipe"):
        raise ValueError(f"{name} {description} is a still image ({format_name}), not a video")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        if not kinds:
            raise ValueError(f"{name} {description} holds no streams at all (an empty clip)")
        raise ValueError(f"{name} {description} has no video stream (it holds {', '.join(kinds)})")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    _check_frame_size(width, height, name, description)
    time_base = stream.time_base or Fraction(1, 1_000_000)
    header_seconds = float(stream.duration * time_base) if stream.duration else (
        container.duration / 1_000_000 if container.duration else None
    )
    if header_seconds is not None and header_seconds > MAX_DURATION_S:
        raise ValueError(
            f"{name} {description} lasts {header_seconds:.0f} s; the longest accepted is {MAX_DURATION_S:.0f} s, please trim it"
        )

    # 1. Demux without decoding: every frame's timestamp and the keyframes.
    stamps, keyframes, exact = [], [], True
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            exact = False
            stamp = len(stamps)
        stamps.append(stamp)
        if packet.is_keyframe:
            keyframes.append(stamp)
        if len(stamps) > MAX_CLIP_FRAMES:
            raise ValueError(
                f"{name} {description} has more than {MAX_CLIP_FRAMES} frames; the longest accepted is "
                f"{MAX_DURATION_S:.0f} s (at most {MAX_CLIP_FRAMES} frames), please trim it"
            )
    if not stamps:
        raise ValueError(f"{name} {description} has no video frames (an empty clip)")
    if exact:  # presentation order (B-frames arrive out of it)
        stamps = sorted(set(stamps))
    fps = float(stream.average_rate) if stream.average_rate else None
    start = stamps[0]
    span = float((stamps[-1] - start) * time_base) if exact else None
    duration = header_seconds if header_seconds is not None else (span + 1 / fps if span is not None and fps else span)
    if span is not None and span > MAX_DURATION_S:
        raise ValueError(f"{name} {description} lasts {span:.0f} s; the longest accepted is {MAX_DURATION_S:.0f} s, please trim it")

    if isinstance(num_frames, FrameRate):  # the count from the clip's length, now known
        num_frames = num_frames.count(len(stamps), fps, duration)
    positions = np.linspace(0, len(stamps) - 1, num_frames).round().astype(int).tolist()
    wanted = sorted({stamps[p] for p in positions})
    # The decoder refuses any frame over the pixel limit before allocating it, whatever the
    # header said (an MJPEG clip can change size at every frame).
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
    stream.thread_type = "AUTO"
    budget = _DecodeBudget(lambda frame: _check_frame_size(frame.width, frame.height, name, description), MAX_DECODED_FRAMES, DECODE_SECONDS)
    if exact:
        decoded = _decode_by_seeking(container, stream, wanted, sorted(set(keyframes)) or [start], budget)
    else:  # no timestamps to seek by: one pass, converting only the sampled frames
        decoded = _decode_in_order(container, stream, set(positions), budget)
        wanted = sorted(decoded)
    missing = [stamp for stamp in wanted if stamp not in decoded]
    if missing:
        raise ValueError(f"{name} {description} is damaged: {len(missing)} of the sampled frames could not be decoded")

    size = decoded[wanted[0]].size
    frames = [decoded[stamps[p] if exact else p] for p in positions]
    frames = [frame if frame.size == size else frame.resize(size, Image.BICUBIC) for frame in frames]
    return Video(
        frames=tuple(frames),
        indices=tuple(positions),
        timestamps=tuple(float((stamps[p] - start) * time_base) if exact else p / fps if fps else 0.0 for p in positions),
        total_frames=len(stamps),
        duration=duration,
        fps=fps,
        source=description,
        key=key,
    )


def _check_frame_size(width: int, height: int, name: str, description: str) -> None:
    """The header's size (0 where unknown) or a decoded frame's: sides, pixels, aspect."""
    if width and height and min(width, height) < MIN_SIDE:
        raise ValueError(f"{name} {description} frames are {width} x {height} pixels; each side must be at least {MIN_SIDE}")
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(
            f"{name} {description} frames are {width} x {height}; the largest accepted is 3840 x 2160 "
            f"({MAX_FRAME_PIXELS / 1e6:.1f} MP), please downscale it"
        )
    if width and height and max(width, height) / min(width, height) > MAX_ASPECT:
        raise ValueError(
            f"{name} {description} frames are {width} x {height}; aspect ratios beyond {MAX_ASPECT:.0f}:1 are not accepted"
        )


class _OverBudget(Exception):
    def __init__(self, frames: bool):
        super().__init__("frames" if frames else "time")
        self.frames = frames


class _DecodeBudget:
    """Counts the frames decoded for one clip and checks each before it is used; raises
    :class:`_OverBudget` past ``MAX_DECODED_FRAMES`` frames or ``DECODE_SECONDS``."""

    def __init__(self, check, frames: int, seconds: float):
        self.check, self.left, self.deadline = check, frames, time.monotonic() + seconds

    def spend(self, frame) -> None:
        self.left -= 1
        if self.left < 0:
            raise _OverBudget(frames=True)
        if time.monotonic() > self.deadline:
            raise _OverBudget(frames=False)
        self.check(frame)


def _to_image(frame) -> Image.Image:
    """RGB at most ``FRAME_LONG_SIDE`` long: large frames are scaled while converted."""
    scale = FRAME_LONG_SIDE / max(frame.width, frame.height)
    if scale >= 1:
        return frame.to_image()
    return frame.to_image(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)))


def _decode_by_seeking(container, stream, wanted: list[int], keyframes: list[int], budget: _DecodeBudget | None = None) -> dict[int, Image.Image]:
    """The frames at the timestamps ``wanted`` (ascending): seek to the keyframe before each
    one unless the decoder is already between that keyframe and it, then decode forward."""
    budget = budget or _DecodeBudget(lambda frame: None, MAX_DECODED_FRAMES, DECODE_SECONDS)
    found: dict[int, Image.Image] = {}
    frames = None
    position = None  # timestamp of the last frame decoded
    for target in wanted:
        keyframe = keyframes[max(bisect.bisect_right(keyframes, target) - 1, 0)]
        if frames is None or position is None or position >= target or keyframe > position:
            container.seek(keyframe, stream=stream, backward=True, any_frame=False)
            frames, position = container.decode(stream), None
        for frame in frames:
            budget.spend(frame)
            if frame.pts is None:
                continue
            position = frame.pts
            if frame.pts >= target:
                found[target] = _to_image(frame)
                break
    return found


def _decode_in_order(container, stream, positions: set[int], budget: _DecodeBudget | None = None) -> dict[int, Image.Image]:
    budget = budget or _DecodeBudget(lambda frame: None, MAX_DECODED_FRAMES, DECODE_SECONDS)
    container.seek(0)
    found: dict[int, Image.Image] = {}
    last = max(positions)
    for index, frame in enumerate(container.decode(stream)):
        budget.spend(frame)
        if index in positions:
            found[index] = _to_image(frame)
        if index >= last:
            break
    return found
