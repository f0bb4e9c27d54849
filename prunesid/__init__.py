"""PruneSID: training-free vision-token compression for VLMs (ICLR 2026).

``select()`` runs the algorithm on tensors; ``load_vlm()`` runs it inside Hugging Face
transformers VLMs, configured by a *press*: a small frozen settings object (``PruneSID`` or
a baseline method) whose ``compress()`` turns a batch of encoded vision tokens into a
:class:`Compression` (kept token indices, optional merged tokens and the method's
diagnostics). The name follows the habit of KV-cache "presses": configuration, no model code.
"""

from prunesid.compression import Compression
from prunesid.geometry import PatchGrid
from prunesid.grouping import GROUPINGS, register_grouping
from prunesid.images import load_image
from prunesid.methods import PRESSES, DivPrune, Press, PruneSID, RandomPrune, UniformPrune, VisionTokens, VisionZip
from prunesid.presets import PRESETS, default_groups, default_lam, group_cap
from prunesid.selection import Selection, select

__all__ = [
    "GROUPINGS",
    "BUILTIN_MODELS",
    "Compression",
    "DivPrune",
    "EncodedMedia",
    "PRESETS",
    "PRESSES",
    "PatchGrid",
    "Press",
    "PruneSID",
    "RandomPrune",
    "Reply",
    "Selection",
    "UniformPrune",
    "VLM",
    "VisionTokens",
    "VisionZip",
    "default_groups",
    "default_lam",
    "group_cap",
    "load_image",
    "load_vlm",
    "press_applied",
    "register_grouping",
    "select",
]
__version__ = "0.1.0"

_VLM_NAMES = {"BUILTIN_MODELS", "EncodedMedia", "Reply", "VLM", "load_vlm"}


def __getattr__(name: str):
    # transformers is imported only when a model is asked for: select() stays light.
    if name in _VLM_NAMES:
        from prunesid import vlm

        return getattr(vlm, name)
    if name == "press_applied":
        from prunesid.pipeline import press_applied

        return press_applied
    raise AttributeError(f"module 'prunesid' has no attribute {name!r}")
