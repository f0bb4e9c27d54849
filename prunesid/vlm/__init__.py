"""PruneSID inside Hugging Face transformers LLaVA models."""

from prunesid.vlm.loading import DEFAULT_MODEL, load_vlm
from prunesid.vlm.model import VLM, EncodedImage, Reply, ReplyStream
from prunesid.vlm.tiny import BUILTINS

BUILTIN_MODELS = tuple(BUILTINS)

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "VLM", "EncodedImage", "Reply", "ReplyStream", "load_vlm"]
