"""PruneSID: training-free vision-token compression for VLMs (ICLR 2026).

``select()`` runs the algorithm on tensors; ``load_vlm()`` runs it inside Hugging Face
transformers LLaVA models, configured by a ``PruneSID`` press.
"""

from prunesid.defaults import default_groups, default_lam, group_cap
from prunesid.geometry import PatchGrid
from prunesid.grouping import GROUPINGS, register_grouping
from prunesid.images import load_image
from prunesid.press import PruneSID
from prunesid.selection import Selection, select

__all__ = [
    "GROUPINGS",
    "BUILTIN_MODELS",
    "EncodedImage",
    "PatchGrid",
    "PruneSID",
    "Reply",
    "Selection",
    "VLM",
    "default_groups",
    "default_lam",
    "group_cap",
    "load_image",
    "load_vlm",
    "register_grouping",
    "select",
]
__version__ = "0.1.0"

_VLM_NAMES = {"BUILTIN_MODELS", "EncodedImage", "Reply", "VLM", "load_vlm"}


def __getattr__(name: str):
    # transformers is imported only when a model is asked for: select() stays light.
    if name in _VLM_NAMES:
        from prunesid import vlm

        return getattr(vlm, name)
    raise AttributeError(f"module 'prunesid' has no attribute {name!r}")
