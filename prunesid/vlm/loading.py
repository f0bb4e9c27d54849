"""load_vlm(): a Hugging Face checkpoint of a supported family or an offline built-in, ready to chat.

One path for both: a built-in is written to a directory in its Hub repository's layout
(``prunesid.families``) and loaded from there like a download. A checkpoint that cannot
be used (a missing file, a package to install) fails with one ValueError saying what to do.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from prunesid.family_kit.options import given_family_options
from prunesid.family_kit import builtin_directory, builtin_models, load_families, refuse_foreign
from prunesid.family_kit.base import FamilySpec, supported_families
from prunesid.vlm.model import VLM
from prunesid.family_kit.processors import load_processor, missing_package_message

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"


def load_vlm(
    model: str = DEFAULT_MODEL, device: str = "auto", dtype: str | torch.dtype = "auto", progress: bool = False,
    *, min_pixels: int | None = None, max_pixels: int | None = None, newlines: str | None = None,
    fps: float | None = None,
) -> VLM:
    """Load a VLM of a supported family (``prunesid.family_kit.base.FAMILIES``) with press support.

    Args:
        model: a Hugging Face model id (``llava-hf/llava-1.5-7b-hf``,
            ``llava-hf/llava-interleave-qwen-0.5b-hf``, ``Qwen/Qwen2.5-VL-7B-Instruct``,
            ``LanguageBind/Video-LLaVA-7B-hf``, ...), a local directory holding one (as
            downloaded: no torchvision needed, docs/models.md), or an offline built-in with
            random weights (``prunesid.vlm.BUILTIN_MODELS``: ``tiny-random``,
            ``tiny-random-qwen2.5-vl``, ...), loaded from a directory in its Hub layout.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (float16 on GPU, float32 on CPU) or a torch dtype / its name.
        progress: print what is being loaded and how long it took (the CLI turns it on).
        min_pixels, max_pixels: for models with dynamic resolution (Qwen-VL), the bounds of
            the processor's resize (default: the processor's own); other families refuse them.
        fps: for Qwen-VL clips, sample frames at this rate (``2.0``: the Qwen processors'
            default; 4 to 32 frames, an even count) instead of 16 frames whatever the length.
        newlines: for LLaVA-NeXT and LLaVA-OneVision, the newline tokens of compressed runs:
            ``"authors"`` (none: what the paper measured; LLaVA-NeXT's default) or ``"rows"``
            (one per row of the unpadded grid; LLaVA-OneVision's default, its own packing).

    The family options (``min_pixels``, ``max_pixels``, ``newlines``, ``fps``) are declared
    once in :class:`prunesid.family_kit.options.FamilyOptions`, with the CLI's flags.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a built-in name ({', '.join(builtin_models())}), a Hugging Face id or a directory, got {model!r}")
    resolved_device = _device(device)
    resolved_dtype = _dtype(dtype, resolved_device)
    options = given_family_options(min_pixels=min_pixels, max_pixels=max_pixels, newlines=newlines, fps=fps)
    start = time.perf_counter()
    if progress:
        print(f"Loading {model} on {resolved_device} ({str(resolved_dtype).removeprefix('torch.')})...", file=sys.stderr, flush=True)
    builtin = model in builtin_models()
    with _no_progress_bars() if builtin else nullcontext():  # a built-in loads in a blink
        path = str(builtin_directory(model)) if builtin else model
        hf_model, processor = _load_pretrained(path, resolved_dtype, options)
    hf_model = hf_model.to(resolved_device, resolved_dtype).eval()
    if progress:
        print(f"Loaded {model} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return wrap(hf_model, processor, name=model, **options)


def wrap(hf_model, processor, name: str, **family_options) -> VLM:
    """A VLM around an already loaded transformers model and its processor (``family_options``:
    those of :class:`prunesid.family_kit.options.FamilyOptions` its family takes)."""
    model_type = hf_model.config.model_type
    if model_type not in load_families():
        raise ValueError(f"model type {model_type!r} is not supported; supported: {supported_families()}")
    options = given_family_options(**family_options)
    _check_family_options(model_type, options)
    return VLM(hf_model, processor, load_families()[model_type].family(hf_model, processor, **options), name=name)


def _check_family_options(model_type: str, options: dict) -> None:
    """The options a family takes are the parameters of its ``__init__``."""
    refuse_foreign(options, inspect.signature(load_families()[model_type].family.__init__).parameters, model_type)


def _load_pretrained(model: str, dtype: torch.dtype, options: dict | None = None):
    if not Path(model).is_dir() and model.count("/") != 1:
        # Every LLaVA checkpoint on the Hub is "owner/name": fail now rather than after retries.
        raise ValueError(
            f"unknown model {model!r}: not a built-in ({', '.join(builtin_models())}), not a directory, "
            f"and not a Hugging Face id of the form owner/name (e.g. {DEFAULT_MODEL})"
        )
    model_type = _model_type(model)
    if model_type not in load_families():
        raise ValueError(f"model {model!r} is a {model_type!r} model; supported: {supported_families()}")
    _check_family_options(model_type, options or {})  # before loading the weights
    spec = load_families()[model_type]
    if spec.loader is not None:
        return spec.loader(model, dtype)
    if Path(model).is_dir():
        check_weight_files(Path(model))
    processor = load_processor(model, model_type)  # before the weights: fails fast
    try:
        hf_model = _model_class(spec).from_pretrained(model, dtype=dtype)
    except ImportError as error:
        raise ValueError(missing_package_message(model, error)) from error
    return hf_model, processor


def _model_type(model: str) -> str:
    """config.json's model_type, read without transformers (a family may live outside it)."""
    try:
        if Path(model).is_dir():
            config_file = Path(model) / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            config_file = Path(hf_hub_download(model, "config.json"))
        model_type = json.loads(config_file.read_text()).get("model_type")
    except Exception as error:  # no file, no network, no access, not JSON
        where = "local directory" if Path(model).is_dir() else "Hugging Face model id"
        raise ValueError(
            f"unknown model {model!r}: not a built-in ({', '.join(builtin_models())}) and not a loadable {where} "
            f"(no config.json, no network, a typo, or no access?). Details: {error}"
        ) from error
    if not isinstance(model_type, str):
        raise ValueError(f"{model}: config.json has no model_type; supported: {supported_families()}")
    return model_type


def _model_class(spec: FamilySpec):
    if not isinstance(spec.model_class, str):
        return spec.model_class
    import transformers

    model_class = getattr(transformers, spec.model_class, None)
    if model_class is None:
        raise ValueError(
            f"{spec.model_type!r} models need {spec.model_class}, which transformers {transformers.__version__} "
            f"does not have: upgrade it (`pip install -U transformers`)"
        )
    return model_class


def check_weight_files(directory: Path) -> None:
    """ValueError naming what a checkpoint directory lacks of its weights."""
    present = [name for name in WEIGHT_FILES if (directory / name).is_file()]
    if not present:
        raise ValueError(
            f"{directory} has no weights (none of {', '.join(WEIGHT_FILES)}): an incomplete download? "
            f"Fetch them again, e.g. `hf download <repo id> --include '*.safetensors' '*.json' --local-dir {directory}`"
        )
    index = next((name for name in present if name.endswith(".index.json")), None)
    if index is None:
        return
    try:
        shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise ValueError(f"{directory / index} is not a valid weight index: {error}") from error
    missing = [shard for shard in shards if not (directory / shard).is_file()]
    if missing:
        raise ValueError(
            f"{directory} lacks {len(missing)} of its {len(shards)} weight shards ({', '.join(missing)}): an "
            f"incomplete download? Fetch them again, e.g. `hf download <repo id> {missing[0]} --local-dir {directory}`"
        )


@contextmanager
def _no_progress_bars():
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


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
