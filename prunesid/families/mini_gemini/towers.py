"""Mini-Gemini's two vision towers read from their own repositories, for checkpoints whose
shards lack them.

MGM's config.json names each tower by a path (``mm_vision_tower``:
``model_zoo/OpenAI/clip-vit-large-patch14-336``; ``mm_vision_tower_aux``:
``model_zoo/OpenAI/openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup``) and MGM's own
loader reads the towers' weights from there, whatever the shards hold. Such a path is
recognised by its last component and looked for, in order:

1. as written (absolute, or relative to the working directory: MGM's own convention);
2. relative to the checkpoint's directory;
3. in each directory of ``$PRUNESID_MGM_TOWERS`` (``os.pathsep``-separated), under the
   path's last component or the name of the Hub repository it stands for;
4. in the Hugging Face cache or on the Hub: ``openai/clip-vit-large-patch14-336`` and
   ``laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup``.

The CLIP tower is a transformers CLIP checkpoint (``model.safetensors`` or
``pytorch_model.bin``, the vision weights under ``vision_model.``); the ConvNeXt tower is an
open_clip checkpoint (``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``
beside ``open_clip_config.json``, the trunk under ``visual.trunk.``), read here without
open_clip or timm. Both come back under the names MGM's shards use, so one strict loader
checks every weight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

ENV = "PRUNESID_MGM_TOWERS"
CLIP_REPO = "openai/clip-vit-large-patch14-336"
CONVNEXT_REPO = "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup"
CLIP_PREFIX = "model.vision_tower.vision_tower."  # where MGM's shards keep the CLIP tower
AUX_PREFIX = "model.vision_tower_aux."  # and the ConvNeXt trunk


def hub_repo(name: str, role: str) -> str:
    """The Hub repository a released ``mm_vision_tower(_aux)`` path stands for."""
    lowered = name.lower().replace("_", "-")
    if role == "aux" and "convnext" in lowered:
        return CONVNEXT_REPO
    if role == "clip" and "clip-vit-large-patch14-336" in lowered:
        return CLIP_REPO
    return name


def tower_directory(name: str, role: str, checkpoint: Path) -> Path:
    """The directory holding the tower ``name`` (``role``: ``clip`` or ``aux``); ValueError naming
    where it was looked for."""
    leaf = Path(name).name
    repo = hub_repo(name, role)
    candidates = [Path(name), checkpoint / name]
    for root in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        candidates += [Path(root) / leaf, Path(root) / Path(repo).name]
    for candidate in candidates:
        if candidate.is_dir() and _weights_file(candidate, role) is not None:
            return candidate
    downloaded = _from_hub(repo, role)
    if downloaded is not None:
        return downloaded
    what = "CLIP tower (mm_vision_tower" if role == "clip" else "ConvNeXt tower (mm_vision_tower_aux"
    raise ValueError(
        f"{checkpoint}: the weights hold no {what} {name!r}) and its repository ({repo}) was not found: put a download "
        f"of {repo} at {name} or under a directory named by ${ENV} (as {leaf} or {Path(repo).name})"
    )


def read_tower(directory: Path, role: str) -> dict[str, torch.Tensor]:
    """The tower's weights from its repository, under the names MGM's shards give them."""
    path = _weights_file(directory, role)
    tensors = _read(path)
    if role == "clip":
        # transformers' CLIP checkpoints: vision_model.* (and text_model.*, the projections, left out)
        return {CLIP_PREFIX + name: tensor for name, tensor in tensors.items() if name.startswith("vision_model.")}
    config = directory / "open_clip_config.json"
    if config.is_file():
        model_name = json.loads(config.read_text()).get("model_cfg", {}).get("vision_cfg", {}).get("timm_model_name", "")
        if "convnext" not in str(model_name):
            raise ValueError(f"{config}: the aux tower is {model_name!r}, not the ConvNeXt trunk Mini-Gemini mines")
    # open_clip: visual.trunk.{stem,stages}.* (timm's names, as MGM's shards); the head, the text tower left out
    trunk = {}
    for name, tensor in tensors.items():
        for part in ("stem.", "stages."):
            if name.startswith("visual.trunk." + part):
                trunk[AUX_PREFIX + "vision_" + name[len("visual.trunk."):]] = tensor
    if not trunk:
        raise ValueError(f"{path} holds no ConvNeXt trunk weights (visual.trunk.stem.* / visual.trunk.stages.*)")
    return trunk


_WEIGHT_NAMES = {"clip": ("model.safetensors", "pytorch_model.bin"), "aux": ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")}


def _weights_file(directory: Path, role: str) -> Path | None:
    return next((directory / name for name in _WEIGHT_NAMES[role] if (directory / name).is_file()), None)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, or pickled objects beyond tensors
        raise ValueError(f"{path} cannot be read as a PyTorch weight file: {error}") from error


def _from_hub(repo: str, role: str) -> Path | None:
    """The repository from the Hugging Face cache (or the Hub when online), safetensors first so
    that only one copy of the weights is fetched; None when unavailable."""
    if repo.count("/") != 1 or Path(repo).exists():
        return None
    configs = ["config.json", "preprocessor_config.json"] if role == "clip" else ["open_clip_config.json"]
    try:
        from huggingface_hub import snapshot_download

        for weights in _WEIGHT_NAMES[role]:
            directory = Path(snapshot_download(repo, allow_patterns=[*configs, weights]))
            if _weights_file(directory, role) is not None:
                return directory
    except Exception:  # offline, no cache, no access
        return None
    return None
