"""PruneSID inside vLLM: a plug-in model class per family and a client for the embeddings route.

Two ways in, both documented in docs/vllm.md:

- **pre-sized** (fixed budgets): ``pip install prunesid[vllm]`` registers, through vLLM's
  ``vllm.general_plugins`` entry point, the model classes the families declare
  (``prunesid/families/<name>/vllm_model.py``), which compress inside the engine. A run
  picks one with ``hf_overrides={"architectures": [ARCHITECTURES["llava"]], "prunesid":
  {"method": "prunesid", "budget": 64}}`` (:func:`engine_overrides` writes it). The front
  end sizes each image's placeholders with the family's layout (``fed_tokens``), the engine
  runs the press of the registry on the tower's outputs: the two agree by construction.
- **embeddings** (PruneSID-Dyn, per-request budgets): :mod:`prunesid.vllm.client` encodes,
  compresses and projects outside the engine and sends the embeddings to an engine started
  with ``enable_mm_embeds=True``.

This module and :mod:`~prunesid.vllm.settings`, :mod:`~prunesid.vllm.heads` and
:mod:`~prunesid.vllm.client` import without vLLM; :mod:`~prunesid.families.llava.vllm_model` needs it.
"""

from __future__ import annotations

from prunesid.vllm.settings import ARCHITECTURES, CLASS_PATHS, CONFIG_KEY, engine_arguments, engine_overrides

__all__ = ["ARCHITECTURES", "CONFIG_KEY", "engine_arguments", "engine_overrides", "register"]


def register() -> None:
    """The ``vllm.general_plugins`` entry point: name the plug-in's model classes to vLLM.

    vLLM calls it in every process it starts, whether or not a run uses PruneSID, so it only
    registers names (the classes are imported when a run asks for one)."""
    from vllm import ModelRegistry

    from prunesid.vllm.cpu_runner import install

    install()  # the CPU runner's missing switch for the M-RoPE classes (imports nothing now)
    for model_type, architecture in ARCHITECTURES.items():
        if architecture not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(architecture, CLASS_PATHS[model_type])
