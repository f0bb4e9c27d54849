"""Which model the app serves, and the banner that says so honestly."""

from __future__ import annotations

import logging
import os

import torch

from prunesid import load_vlm
from prunesid.vlm import DEFAULT_MODEL, VLM

FALLBACK_MODEL = "tiny-random"
log = logging.getLogger(__name__)


def requested_model(cli_model: str | None) -> str:
    """--model, else $PRUNESID_MODEL, else the 7B default on a GPU and the offline tiny model elsewhere."""
    if cli_model:
        return cli_model
    if os.environ.get("PRUNESID_MODEL"):
        return os.environ["PRUNESID_MODEL"]
    return DEFAULT_MODEL if gpu_available() else FALLBACK_MODEL


def gpu_available() -> bool:
    # ZeroGPU Spaces attach the GPU per call; at start-up only their environment says so.
    return torch.cuda.is_available() or bool(os.environ.get("SPACES_ZERO_GPU"))


def load_with_fallback(name: str) -> tuple[VLM, str]:
    """Load ``name``; if that fails, load the offline model. Returns the VLM and a banner."""
    reason = None
    try:
        vlm = load_vlm(name, progress=True)
    except (ValueError, OSError, RuntimeError) as error:  # no network, no GPU memory, bad id
        log.warning("could not load %s (%s); falling back to %s", name, error, FALLBACK_MODEL)
        reason = f"{name} could not be loaded ({_short(error)})"
        vlm = load_vlm(FALLBACK_MODEL)
    return vlm, banner(vlm, reason)


def banner(vlm: VLM, reason: str | None) -> str:
    where = f"{vlm.device.type.upper()}, {str(vlm.dtype).removeprefix('torch.')}"
    text = f"**Model:** `{vlm.name}` on {where}."
    if vlm.name.startswith("tiny-random"):
        cause = f"{reason}; " if reason else ("no GPU here; " if not gpu_available() else "")
        text = (
            f"⚠️ {cause}running the offline model `{vlm.name}` with **random weights**: its answers are "
            f"meaningless, but the token selection below is computed for real. Run on a GPU with "
            f"`--model {DEFAULT_MODEL}` for real answers."
        )
    return text


def _short(error: BaseException) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if len(message) < 160 else message[:157] + "..."
