"""A corpus of hostile media, made in the tests: clips and pictures that once cost the demo
seconds to minutes and gigabytes each (narrow and wide frames, headers that lie about later
frames, a long clip with one keyframe, many streams, and the image equivalents).

Everything is small on disk and cheap to make: big frames are encoded once and their
packet muxed again, and no full-size picture is built in this process beyond one frame.
"""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def _encoded(codec: str, width: int, height: int, pix_fmt: str, frame=None, options: dict | None = None) -> bytes:
    """One intra frame of ``codec`` at ``width`` x ``height`` (mid grey unless ``frame``)."""
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
    encoder.time_base = Fraction(1, 8)
    encoder.options = options or {}
    encoder.open()
    if frame is None:
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
    frame.pts = 0
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    return b"".join(bytes(packet) for packet in packets)


def mjpeg_with_sizes(path: Path, sizes: list[tuple[int, int]], fps: int = 8) -> Path:
    """An AVI of MJPEG frames whose header gives the first frame's size while the frames
    that follow have their own (``sizes``, one per frame): a header that lies."""
    cache: dict[tuple[int, int], bytes] = {}
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = sizes[0][0], sizes[0][1], "yuvj420p"
        for index, size in enumerate(sizes):
            if size not in cache:
                cache[size] = _encoded("mjpeg", *size, "yuvj420p")
            packet = av.Packet(cache[size])
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, fps)
            packet.is_keyframe = True
            container.mux(packet)
    return path


def ffv1_clip(path: Path, width: int, height: int, frames: int = 1, streams: int = 1) -> Path:
    """A lossless FFV1 clip in Matroska (tiny on disk whatever the frame shape); ``streams``
    video streams of it."""
    with av.open(str(path), "w", format="matroska") as container:
        outs = []
        for _ in range(streams):
            stream = container.add_stream("ffv1", rate=8)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            outs.append(stream)
        for index in range(frames):
            pixels = np.full((height, width, 3), (40 * index) % 256, dtype=np.uint8)
            pixels[: height // 2, : width // 2] = 200
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for stream in outs:
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream in outs:
            for packet in stream.encode():
                container.mux(packet)
    return path


def single_keyframe_clip(path: Path, frames: int, width: int = 64, height: int = 48, fps: int = 30) -> Path:
    """H.264 with one keyframe and ``frames - 1`` predicted frames: reaching a frame near the
    end means decoding everything before it."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"x264-params": "keyint=infinite:scenecut=0:bframes=0", "preset": "ultrafast", "threads": "1"}
        pixels = np.full((height, width, 3), 100, dtype=np.uint8)
        for index in range(frames):
            pixels[:, index % width] = 255 if index % 2 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def keyframe_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size and packet.is_keyframe)


def png(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (width, height), (90, 140, 200)).save(path)
    return path


def jpeg_claiming(path: Path, width: int, height: int, progressive: bool = False) -> Path:
    """A small JPEG whose frame header (SOF0, or SOF2 when ``progressive``, 4:4:4) is rewritten
    to claim ``width`` x ``height``: the pixel data that follows is far too short for it."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 90, 40)).save(buffer, "JPEG", progressive=progressive, subsampling=0 if progressive else -1)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` over a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


# PNG colour types and bit depths of each mode written by png_of_mode.
_PNG_MODES = {"1": (0, 1, 1), "L": (0, 8, 1), "I;16": (0, 16, 2), "P": (3, 8, 1), "RGB": (2, 8, 3), "RGBA": (6, 8, 4)}


def png_of_mode(path: Path, mode: str, width: int, height: int) -> Path:
    """A PNG of ``mode`` (1, L, I;16, P, RGB, RGBA) at any size, a few KB on disk: the rows
    (a stripe pattern) are streamed through zlib, never held at full size."""
    colour, depth, samples = _PNG_MODES[mode]
    row_bytes = (width * depth * samples + 7) // 8
    row = bytearray(row_bytes)
    for x in range(0, row_bytes, 64):
        row[x] = 0xA5
    compressor = zlib.compressobj(9)
    data = [compressor.compress(b"\x00" + bytes(row)) for _ in range(1)]
    line = b"\x00" + bytes(row)
    block = line * max(1, (1 << 20) // len(line))
    rows_per_block = len(block) // len(line)
    left = height - 1
    while left > 0:
        take = min(left, rows_per_block)
        data.append(compressor.compress(block[: take * len(line)]))
        left -= take
    data.append(compressor.flush())

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    chunks = [chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))]
    if mode == "P":
        chunks.append(chunk(b"PLTE", bytes(range(256)) * 3))
    chunks.append(chunk(b"IDAT", b"".join(data)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + chunk(b"IEND", b""))
    return path


def tiff_of_mode(path: Path, mode: str, width: int, height: int) -> Path:
    """A deflate-compressed TIFF of mode I (32-bit integers) or F (32-bit floats)."""
    values = np.zeros((height, width), dtype=np.int32 if mode == "I" else np.float32)
    values[::97] = 1000
    Image.fromarray(values, mode=mode).save(path, compression="tiff_adobe_deflate")
    return path


def jpeg_of_mode(path: Path, mode: str, width: int, height: int, progressive: bool = False) -> Path:
    """A JPEG (L, RGB or CMYK; ``progressive`` or baseline) of a gradient."""
    gradient = Image.linear_gradient("L").resize((width, height), Image.NEAREST)
    image = gradient if mode == "L" else Image.merge("RGB", (gradient, gradient, gradient)).convert(mode)
    image.save(path, "JPEG", quality=70, progressive=progressive, subsampling=0 if progressive else -1)
    return path
