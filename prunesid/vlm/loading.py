"""load_vlm(): a Hugging Face checkpoint of a supported family or an offline built-in, ready to chat."""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import torch

import prunesid.vlm.families  # noqa: F401  (registers every family)
from prunesid.vlm.family import FAMILIES, supported_families
from prunesid.vlm.model import VLM
from prunesid.vlm.tiny import BUILTINS

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"


def load_vlm(
    model: str = DEFAULT_MODEL, device: str = "auto", dtype: str | torch.dtype = "auto", progress: bool = False,
    *, min_pixels: int | None = None, max_pixels: int | None = None,
) -> VLM:
    """Load a VLM of a supported family (``prunesid.vlm.family.FAMILIES``) with press support.

    Args:
        model: ``"tiny-random"`` / ``"tiny-random-next"`` (offline built-ins with random
            weights), a Hugging Face model id (``llava-hf/llava-1.5-7b-hf``,
            ``llava-hf/llava-v1.6-vicuna-7b-hf``, ``llava-hf/llava-interleave-qwen-0.5b-hf``,
            ``Qwen/Qwen2.5-VL-7B-Instruct``, ``Qwen/Qwen3-VL-4B-Instruct``) or a local directory
            holding one. Built-ins: ``prunesid.vlm.BUILTIN_MODELS``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (float16 on GPU, float32 on CPU) or a torch dtype / its name.
        progress: print what is being loaded and how long it took (the CLI turns it on).
        min_pixels, max_pixels: for models with dynamic resolution (Qwen-VL), the bounds of
            the processor's resize (default: the processor's own); other families refuse them.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a built-in name ({', '.join(BUILTINS)}), a Hugging Face id or a directory, got {model!r}")
    resolved_device = _device(device)
    resolved_dtype = _dtype(dtype, resolved_device)
    options = _family_options(min_pixels=min_pixels, max_pixels=max_pixels)
    start = time.perf_counter()
    if progress:
        print(f"Loading {model} on {resolved_device} ({str(resolved_dtype).removeprefix('torch.')})...", file=sys.stderr, flush=True)
    if model in BUILTINS:
        hf_model, processor = BUILTINS[model]()
    else:
        hf_model, processor = _load_pretrained(model, resolved_dtype, options)
    hf_model = hf_model.to(resolved_device, resolved_dtype).eval()
    if progress:
        print(f"Loaded {model} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return wrap(hf_model, processor, name=model, **options)


def wrap(hf_model, processor, name: str, **family_options) -> VLM:
    """A VLM around an already loaded transformers model and its processor (``family_options``:
    ``min_pixels`` / ``max_pixels`` for Qwen-VL)."""
    model_type = hf_model.config.model_type
    if model_type not in FAMILIES:
        raise ValueError(f"model type {model_type!r} is not supported; supported: {supported_families()}")
    options = _family_options(**family_options)
    _check_family_options(model_type, options)
    return VLM(hf_model, processor, FAMILIES[model_type].family(hf_model, processor, **options), name=name)


def _family_options(**options) -> dict:
    """The options given (not None), each a positive integer."""
    given = {name: value for name, value in options.items() if value is not None}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return given


def _check_family_options(model_type: str, options: dict) -> None:
    accepted = inspect.signature(FAMILIES[model_type].family.__init__).parameters
    unknown = [name for name in options if name not in accepted]
    if unknown:
        verb = "applies" if len(unknown) == 1 else "apply"
        raise ValueError(f"{' and '.join(unknown)} {verb} only to models with dynamic resolution (Qwen-VL), not to {model_type!r} models")


def _load_pretrained(model: str, dtype: torch.dtype, options: dict | None = None):
    import transformers
    from transformers import AutoConfig, AutoProcessor

    if not Path(model).is_dir() and model.count("/") != 1:
        # Every LLaVA checkpoint on the Hub is "owner/name": fail now rather than after retries.
        raise ValueError(
            f"unknown model {model!r}: not a built-in ({', '.join(BUILTINS)}), not a directory, "
            f"and not a Hugging Face id of the form owner/name (e.g. {DEFAULT_MODEL})"
        )
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        where = "local directory" if Path(model).is_dir() else "Hugging Face model id"
        raise ValueError(
            f"unknown model {model!r}: not a built-in ({', '.join(BUILTINS)}) and not a loadable {where} "
            f"(no network, a typo, or no access?). Details: {error}"
        ) from error
    if config.model_type not in FAMILIES:
        raise ValueError(f"model {model!r} is a {config.model_type!r} model; supported: {supported_families()}")
    _check_family_options(config.model_type, options or {})  # before loading the weights
    model_class = getattr(transformers, FAMILIES[config.model_type].model_class)
    hf_model = model_class.from_pretrained(model, dtype=dtype)
    processor = AutoProcessor.from_pretrained(model)
    return hf_model, processor


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
    return resolved


def _dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be 'auto' or a floating torch dtype (float32, float16, bfloat16), got {dtype!r}")
    return resolved
