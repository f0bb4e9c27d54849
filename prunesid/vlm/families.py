"""Importing this module registers every supported family (one module each)."""

from prunesid.vlm import llava, llava_next  # noqa: F401
from prunesid.vlm import qwen_vl, tiny_qwen  # noqa: F401  (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and their built-ins)
from prunesid.vlm import tiny_video, video_llava  # noqa: F401  (Video-LLaVA and its built-in)
