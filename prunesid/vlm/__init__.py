"""Presses inside Hugging Face transformers VLMs: one module per model family."""

from prunesid.vlm.family import FAMILIES, EncodedMedia
from prunesid.vlm.loading import DEFAULT_MODEL, load_vlm, wrap
from prunesid.vlm.model import VLM, Reply, ReplyStream
from prunesid.vlm.builtins import BUILTINS

BUILTIN_MODELS = tuple(BUILTINS)

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "FAMILIES", "VLM", "EncodedMedia", "Reply", "ReplyStream", "load_vlm", "wrap"]
