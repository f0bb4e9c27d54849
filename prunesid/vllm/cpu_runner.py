"""vLLM's CPU model runner, given the one statement of the GPU runner it lacks.

vLLM 0.32's GPU runner switches its multimodal-pruning path on after loading the model
(``v1/worker/gpu_model_runner.py`` ``load_model``, ~5156: ``is_multimodal_pruning_enabled =
supports_multimodal_pruning(model) and mm_config.is_multimodal_pruning_enabled()``); the CPU
runner subclasses it but overrides ``load_model`` (``v1/worker/cpu_model_runner.py`` ~62)
without that statement, so the flag stays False (``gpu_model_runner.py`` ~509) and
``recompute_mrope_positions`` is never called on CPU. The plug-in's Qwen classes need it
(``prunesid.families.qwen_vl.vllm_models.base``): for them only, the CPU runner's ``load_model`` ends with the GPU
runner's statement. vLLM's own classes are left as vLLM runs them.

Importing the CPU runner costs seconds, so nothing is imported here: the wrap is applied when
vLLM itself imports that module (an import hook), or at once if it already has.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

MODULE = "vllm.v1.worker.cpu_model_runner"
MARKER = "prunesid_positions"  # a class attribute of the plug-in's M-RoPE classes


def install() -> None:
    """Wrap the CPU runner's ``load_model`` now or when it is imported (idempotent)."""
    module = sys.modules.get(MODULE)
    if module is not None:
        _wrap(module)
    elif not any(isinstance(finder, _WrapOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WrapOnImport())


def _wrap(module) -> None:
    runner = module.CPUModelRunner
    original = runner.load_model
    if getattr(original, MARKER, False):
        return

    def load_model(self, *args, **kwargs):
        original(self, *args, **kwargs)
        model = self.get_model()
        if getattr(model, MARKER, False):
            from vllm.model_executor.models.interfaces import supports_multimodal_pruning

            mm_config = self.model_config.multimodal_config
            self.is_multimodal_pruning_enabled = (
                supports_multimodal_pruning(model) and mm_config is not None and mm_config.is_multimodal_pruning_enabled()
            )

    setattr(load_model, MARKER, True)
    load_model.__wrapped__ = original
    runner.load_model = load_model


class _WrapOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _wrap(module)

        spec.loader.exec_module = exec_module
        return spec
