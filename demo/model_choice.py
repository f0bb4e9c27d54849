"""Which model the app serves, and the banner that says so honestly.

Default by hardware and network (``--model`` or ``$PRUNESID_MODEL`` override it):

| GPU | Hugging Face Hub | model |
|---|---|---|
| yes | reachable (or the model cached) | ``llava-hf/llava-1.5-7b-hf`` |
| no | reachable (or the model cached) | ``llava-hf/llava-interleave-qwen-0.5b-hf``: a real 0.5B LLaVA that answers on a CPU |
| any | unreachable and not cached | ``tiny-random``: random weights, with a banner saying why |

"Unreachable" is decided at once when ``HF_HUB_OFFLINE`` is set, else by one request with
a hard deadline of :data:`PROBE_TIMEOUT_S` seconds (DNS included), instead of the retries
a download would make before failing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from prunesid import load_vlm
from prunesid.vlm import BUILTIN_MODELS, VLM

GPU_MODEL = "llava-hf/llava-1.5-7b-hf"
CPU_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"
FALLBACK_MODEL = "tiny-random"
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
log = logging.getLogger(__name__)


@dataclass
class ModelChoice:
    name: str
    why: str  # how the name was chosen, for the banner
    offline: str | None = None  # why the Hub counts as unreachable, if it was asked and does


def gpu_available() -> bool:
    # ZeroGPU Spaces attach the GPU per call; at start-up only their environment says so.
    return torch.cuda.is_available() or bool(os.environ.get("SPACES_ZERO_GPU"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_reason(timeout: float | None = None) -> str | None:
    """None when the Hub answers; otherwise why it counts as unreachable. Never takes
    longer than ``timeout`` seconds (default :data:`PROBE_TIMEOUT_S`): the request runs in
    a thread that is not waited for."""
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    url = f"{hub_endpoint()}/api/models/{CPU_MODEL}"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            _fetch(url, timeout)
            outcome.append(None)
        except urllib.error.HTTPError:  # the server answered (401, 404...): reachable
            outcome.append(None)
        except urllib.error.URLError as error:  # DNS, refused, TLS
            outcome.append(f"{_host(url)} is unreachable: {_short(error.reason)}")
        except Exception as error:  # reset, timeout
            outcome.append(f"{_host(url)} is unreachable: {_short(error)}")

    worker = threading.Thread(target=probe, daemon=True, name="hub-probe")
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer from {_host(url)} within {timeout:g} s"
    return outcome[0]


def _fetch(url: str, timeout: float) -> None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "prunesid-demo"})
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def choose_model(cli_model: str | None) -> ModelChoice:
    """--model, else $PRUNESID_MODEL, else by hardware and network (module docstring)."""
    if cli_model:
        return ModelChoice(cli_model, "--model")
    if os.environ.get("PRUNESID_MODEL"):
        return ModelChoice(os.environ["PRUNESID_MODEL"], "$PRUNESID_MODEL")
    gpu = gpu_available()
    name, why = (GPU_MODEL, "a GPU is available") if gpu else (CPU_MODEL, "no GPU here: a small LLaVA that answers on a CPU")
    if _cached_snapshot(name) is not None:
        return ModelChoice(name, why)
    reason = offline_reason()
    if reason is not None:
        return ModelChoice(FALLBACK_MODEL, f"{name} is not downloaded and the Hugging Face Hub is unreachable", offline=reason)
    return ModelChoice(name, why)


def load_with_fallback(choice: ModelChoice | str) -> tuple[VLM, str]:
    """Load the chosen model; if that cannot be done, the offline model. Returns the VLM and a banner."""
    if isinstance(choice, str):
        choice = ModelChoice(choice, "requested")
    reason = None
    try:
        vlm = load_chosen(choice)
    except Exception as error:  # no network, no GPU memory, bad id, broken download
        log.warning("could not load %s (%s); falling back to %s", choice.name, error, FALLBACK_MODEL)
        reason = f"{choice.name} could not be loaded ({_short(error)})"
        vlm = load_vlm(FALLBACK_MODEL)
    return vlm, banner(vlm, choice, reason)


def load_chosen(choice: ModelChoice) -> VLM:
    """The chosen model: a built-in, a directory, or a Hub model (from the cache, else
    downloaded unless the Hub is unreachable)."""
    name = choice.name
    if name in BUILTIN_MODELS or Path(name).is_dir() or name.count("/") != 1:
        return load_vlm(name, progress=True)
    local = _cached_snapshot(name)
    if local is None:
        offline = choice.offline if choice.offline is not None else offline_reason()
        if offline is not None:
            raise OSError(f"it is not downloaded and the Hugging Face Hub is unreachable: {offline}")
        local = _download(name)
    vlm = load_vlm(local, progress=True)
    vlm.name = name
    return vlm


def _cached_snapshot(name: str) -> str | None:
    """The local copy of a Hub model if one is complete enough to load, else None."""
    if name in BUILTIN_MODELS or name.count("/") != 1 or Path(name).is_dir():
        return None
    try:
        from huggingface_hub import snapshot_download, try_to_load_from_cache

        config = try_to_load_from_cache(name, "config.json")
        if not isinstance(config, str):
            return None
        return snapshot_download(name, allow_patterns=DOWNLOAD_PATTERNS, local_files_only=True)
    except Exception:
        return None


def _download(name: str) -> str:
    """Download a Hub model into the Hugging Face cache, with progress bars on the console."""
    from huggingface_hub import snapshot_download

    print(f"Downloading {name} into the Hugging Face cache (once; progress below)...", file=sys.stderr, flush=True)
    return snapshot_download(name, allow_patterns=DOWNLOAD_PATTERNS)


def banner(vlm: VLM, choice: ModelChoice | None = None, reason: str | None = None) -> str:
    where = f"{vlm.device.type.upper()}, {str(vlm.dtype).removeprefix('torch.')}"
    if vlm.name.startswith("tiny-random"):
        if reason:
            cause = f"{reason}; "
        elif choice is not None and choice.offline:
            cause = f"{choice.why} ({choice.offline}); "
        else:
            cause = ""
        # What a visitor needs first (the answers are noise, the selection is real), then why.
        why = f" (Why this model: {cause.removesuffix('; ')}.)" if cause else ""
        return (
            f"⚠️ The offline model `{vlm.name}` has **random weights**: its answers are noise, by design; the token "
            f"selection below is computed for real. With the Hugging Face Hub reachable the app serves "
            f"`{CPU_MODEL}` on a CPU and `{GPU_MODEL}` on a GPU.{why}"
        )
    text = f"**Model:** `{vlm.name}` on {where}."
    if vlm.name == CPU_MODEL:
        text += f" No GPU here, so a 0.5B LLaVA answers (real, short answers); a GPU serves `{GPU_MODEL}`."
    if reason:
        text += f" ({reason}.)"
    return text


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def _short(error) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if len(message) < 160 else message[:157] + "..."
