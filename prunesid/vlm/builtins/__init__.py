"""Offline built-in models: tiny, randomly initialised, identical on every machine.

One module per family builds them in memory (``llava``, ``qwen_vl``, ``video_llava``); each is
registered with the Hub layout of the repository it mirrors and loaded by ``load_vlm`` from
a directory written in that layout (``registry.builtin_directory``).
"""

from prunesid.vlm.builtins.registry import BUILTINS, Builtin, builtin_directory, register_builtin
from prunesid.vlm.builtins import llava, qwen_vl, video_llava  # noqa: F401,E402  (each registers its built-ins)
from prunesid.vlm.builtins import mini_gemini  # noqa: F401,E402

__all__ = ["BUILTINS", "Builtin", "builtin_directory", "register_builtin"]
from prunesid.vlm.builtins import llava_onevision  # noqa: F401,E402
from prunesid.vlm.builtins import internvl  # noqa: F401,E402
