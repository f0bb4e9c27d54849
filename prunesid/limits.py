"""What one picture or clip may cost: every media limit of the library, in one place.

The demo adds its own (concurrency, queue share, chat sessions) in demo/limits.py;
docs/security.md explains each number and the time and memory it bounds.
"""

from __future__ import annotations

# --- images (prunesid/images.py) ---------------------------------------------------------
MIN_SIDE = 16  # pixels, for images and video frames alike
MAX_ASPECT = 20.0  # the processors resize the short side to 336: a 1:50 strip would explode
DECODED_PIXELS = 16_000_000  # larger images are decoded at a reduced size, at most this
LARGE_DECODE_BYTES = 64 * 1024 * 1024  # decodes holding more than this run one at a time
# What one image's decode may hold (its pixels in the mode's storage, a progressive JPEG's
# coefficients): 4-byte modes (RGB, RGBA, CMYK, I, F) at the pixel limit take 716 MB.
DECODE_BYTES = 768 * 1024 * 1024

# --- videos (prunesid/video.py) ----------------------------------------------------------
MAX_VIDEO_FILE_BYTES = 256 * 1024 * 1024
MAX_DURATION_S = 600.0  # 10 minutes
MAX_CLIP_FRAMES = 36_000  # 10 minutes at 60 fps: bounds the timestamp list and the demux pass
MAX_FRAME_PIXELS = 3840 * 2160  # every decoded frame, not only the header's: the decoder refuses larger
MAX_SAMPLED_FRAMES = 64
# Frames decoded to reach the sampled ones, whatever the keyframe layout: 8 samples of a
# clip with x264's default keyframe distance (250) take at most 2000.
MAX_DECODED_FRAMES = 2400
DECODE_SECONDS = 20.0  # wall-clock budget of one clip's decoding (a slow codec, a loaded server)
FRAME_LONG_SIDE = 1344  # sampled frames are converted to RGB at most this long (the models see 224-336)
