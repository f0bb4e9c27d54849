"""Importing this module registers every supported family (one module each)."""

from prunesid.vlm import llava, llava_next, qwen_vl, video_llava  # noqa: F401
