"""Presses inside Hugging Face transformers VLMs: one module per model family, and the VLM facade.

Two layers share this package. The families (``family.py`` and one module each) sit below
the press path (:mod:`prunesid.pipeline`), which builds on them; the facade (:class:`VLM`,
``model.py``) and :func:`load_vlm` (``loading.py``) sit above it and call it. So this door
opens the facade when one of its names is asked for, not on import: the press path imports
a family module without loading the facade that calls it.
"""

import prunesid.vlm.families  # noqa: F401  (registers every family)
from prunesid.vlm.builtins import BUILTINS
from prunesid.vlm.family import FAMILIES, EncodedMedia

BUILTIN_MODELS = tuple(BUILTINS)

_LOADING_NAMES = ("DEFAULT_MODEL", "load_vlm", "wrap")
_MODEL_NAMES = ("VLM", "Reply", "ReplyStream")

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "FAMILIES", "VLM", "EncodedMedia", "Reply", "ReplyStream", "load_vlm", "wrap"]


def __getattr__(name: str):
    if name in _LOADING_NAMES:
        from prunesid.vlm import loading

        return getattr(loading, name)
    if name in _MODEL_NAMES:
        from prunesid.vlm import model

        return getattr(model, name)
    raise AttributeError(f"module 'prunesid.vlm' has no attribute {name!r}")
