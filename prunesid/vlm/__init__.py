"""The VLM facade: :class:`VLM` (``model.py``) and :func:`load_vlm` / :func:`wrap` (``loading.py``).

They sit above the press path (:mod:`prunesid.pipeline`), which sits above the families
(:mod:`prunesid.families`). This door opens the facade when one of its names is asked for,
not on import.
"""

from prunesid.family_kit import builtin_models, load_families
from prunesid.family_kit.base import EncodedMedia

BUILTIN_MODELS = tuple(builtin_models())
FAMILIES = load_families()

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
