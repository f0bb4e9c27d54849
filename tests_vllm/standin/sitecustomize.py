"""Test-only stand-in, put on PYTHONPATH by tests_vllm/conftest.py for every process the
tests start (the engine core, ``vllm serve``).

vLLM's LLaVA module imports transformers' Pixtral image processor for one helper, and that
module imports torchvision at import time. torchvision has no CPU wheel matching the CPU
torch here, so the stand-in registers an empty module under that one name: LLaVA needs
nothing from it, and a Pixtral model would fail loudly.
"""

import sys
import types

_NAME = "transformers.models.pixtral.image_processing_pixtral"


def _unavailable(*args, **kwargs):
    raise RuntimeError("Pixtral image processing needs torchvision, which this test environment does not have")


if _NAME not in sys.modules:
    standin = types.ModuleType(_NAME)
    standin._num_image_tokens = _unavailable
    sys.modules[_NAME] = standin
