"""Importing this module registers every supported family (one module each)."""

from prunesid.vlm import llava, llava_next, qwen_vl, video_llava  # noqa: F401
from prunesid.vlm import mini_gemini  # noqa: F401,E402
from prunesid.vlm import llava_onevision  # noqa: F401,E402
from prunesid.vlm import internvl  # noqa: F401,E402
