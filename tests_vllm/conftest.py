"""The vLLM plug-in's tests: run only by `make test-vllm`, in vLLM's own environment (.venv-vllm).

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0: one vLLM import, not
two); `vllm serve` runs as a child process. Both get the torchvision stand-in
(standin/sitecustomize.py) and a small CPU KV cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from PIL import Image

STANDIN = Path(__file__).parent / "standin"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_spec = importlib.util.spec_from_file_location("prunesid_vllm_standin", STANDIN / "sitecustomize.py")
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # this process too

# What every engine of the tests shares: float32 as the transformers path, no compilation.
ENGINE_ARGS = dict(dtype="float32", max_model_len=2048, enforce_eager=True, max_num_seqs=4, limit_mm_per_prompt={"image": 2}, seed=0)


@pytest.fixture(scope="session")
def checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random"))


def pattern(size: tuple[int, int], seed: int) -> Image.Image:
    """An image with structure (a press has something to choose), the same on every run."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([(xs * (seed + 1)) % 256, (ys * 3) % 256, ((xs + ys) // 4) % 256], axis=-1)
    noise = rng.integers(0, 60, size=(height, width, 3))
    return Image.fromarray(((base + noise) % 256).astype("uint8"), "RGB")
