"""Writing a model and its processor as a directory laid out like a Hub repository.

A :class:`HubLayout` names the repository it mirrors and what distinguishes its files: the
weight shards (``model-00001-of-00003.safetensors`` + index, Qwen3.5's
``model.safetensors-00001-of-00011.safetensors``, or one ``model.safetensors``),
the weight names of its CLIP towers (``vision_tower.vision_model.*``), the keys of its
``config.json`` (``image_token_index``, Qwen2-VL's flat text configuration with ``rope_scaling``),
``preprocessor_config.json`` (the ``image_processor_type`` and ``processor_class`` the
repository names, Qwen2-VL's top-level ``min_pixels`` / ``max_pixels``),
``processor_config.json``, ``video_preprocessor_config.json`` (or OneVision's
``video_processor/preprocessor_config.json``), ``chat_template.json`` (or ``.jinja``), the MoE experts' layout, weights the release carries beside the model's,
``generation_config.json`` and the tokenizer files. Loading such a directory is what a user
does with a download, so the built-ins are loaded from one (``prunesid.families``).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# Weight name prefixes of CLIP towers: transformers 5 writes "vision_tower.embeddings...",
# the llava-hf and Video-LLaVA repositories hold "vision_tower.vision_model.embeddings...".
CLIP_PREFIX = "vision_model."


@dataclass(frozen=True)
class HubLayout:
    repo: str  # the Hub repository whose file layout this mirrors
    image_processor_type: str  # preprocessor_config.json's image_processor_type
    processor_class: str  # preprocessor_config.json's processor_class
    shards: int = 1  # 1: model.safetensors; n: shard_name's n files + model.safetensors.index.json
    shard_name: str = "model-{index:05d}-of-{count:05d}.safetensors"  # Qwen3.5: "model.safetensors-{index:05d}-of-..."
    clip_towers: tuple[str, ...] = ()  # weight prefixes of CLIP towers ("vision_tower.")
    token_index_keys: bool = False  # config.json says image_token_index (video_token_index)
    flat_text_config: bool = False  # config.json holds the LLM's keys at top level (Qwen2-VL)
    pixel_limits_top_level: bool = False  # preprocessor_config.json: min_pixels / max_pixels
    # processor_config.json with the processor's options: True for the default option names, or
    # the names the repository's file holds (InternVL3-hf: image_seq_length only)
    processor_config: bool | tuple[str, ...] = False
    video_processor_type: str | None = None  # video_preprocessor_config.json (Qwen3-VL)
    # Where the video processor's settings live: transformers 5's root video_preprocessor_config.json
    # (Qwen3-VL), or, as the llava-hf OneVision repositories publish them, the older image-processor
    # style file video_processor/preprocessor_config.json (image_processor_type names the class).
    video_processor_file: str = "video_preprocessor_config.json"
    # Tokenizer files besides tokenizer.json and tokenizer_config.json (LLaMA-based repositories:
    # special_tokens_map.json, added_tokens.json; Qwen-based: vocab.json, merges.txt).
    tokenizer_files: tuple[str, ...] = ("special_tokens_map.json", "added_tokens.json")
    chat_template_file: str = "chat_template.json"  # or "chat_template.jinja" (Qwen3.5: the template's text)
    # MoE experts as the release stores them: "saved" as transformers 5's save_pretrained writes them;
    # "fused": each layer's experts in two tensors in the layout of transformers' modules, gate_up_proj
    # [E, 2I, hidden] and down_proj [E, hidden, I] (Qwen3.5-MoE); "fused_transposed": the same names
    # transposed, [E, hidden, 2I] and [E, I, hidden] (Qwen3-VL-MoE; transformers transposes on load)
    experts: str = "saved"
    # Weights the release carries beside the model's (Qwen3.5's multi-token-prediction head mtp.*,
    # which transformers skips on load): extra_weights(config.json as a dict) -> {name: tensor}
    extra_weights: Callable | None = None
    # A family with a checkpoint format of its own (Mini-Gemini): writer(model, processor,
    # directory, layout) writes the whole directory instead of the steps below.
    writer: Callable | None = None

    def __post_init__(self):
        if self.experts not in EXPERT_LAYOUTS:
            raise ValueError(f"{self.repo}: experts must be one of {EXPERT_LAYOUTS}, got {self.experts!r}")


EXPERT_LAYOUTS = ("saved", "fused", "fused_transposed")


def write_checkpoint(model, processor, directory: str | Path, layout: HubLayout) -> Path:
    """Write ``model`` and ``processor`` into ``directory`` (created) in ``layout``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if layout.writer is not None:
        return layout.writer(model, processor, directory, layout)
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)  # transformers' own names (the repositories' format)
        _write_config(json.loads((Path(scratch) / "config.json").read_text()), directory, layout)
        (directory / "generation_config.json").write_text((Path(scratch) / "generation_config.json").read_text())
        config = json.loads((Path(scratch) / "config.json").read_text())
        tensors = _read_weights(Path(scratch))
        if layout.experts != "saved":
            tensors = _fused_experts(tensors, transposed=layout.experts == "fused_transposed")
        if layout.extra_weights is not None:
            tensors.update(layout.extra_weights(config))
        _write_weights(tensors, directory, layout)
    _write_processor(processor, directory, layout)
    _write_tokenizer(processor.tokenizer, directory, layout)
    return directory


def _write_config(config: dict, directory: Path, layout: HubLayout) -> None:
    if layout.token_index_keys:
        for key in ("image_token_id", "video_token_id"):
            if key in config:
                config[key.replace("_id", "_index")] = config.pop(key)
    if layout.flat_text_config:
        text = config.pop("text_config")
        text.pop("model_type", None)
        rope = text.pop("rope_parameters", None) or {}
        for key, value in text.items():
            config.setdefault(key, value)
        config["rope_theta"] = rope.get("rope_theta")
        config["rope_scaling"] = {"type": "mrope", "mrope_section": rope.get("mrope_section")}
    _dump(config, directory / "config.json")


def _read_weights(scratch: Path) -> dict:
    tensors = {}
    for path in sorted(scratch.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            tensors.update({name: weights.get_tensor(name) for name in weights.keys()})
    return tensors


# One expert's projection as save_pretrained may write it: <layer>.mlp.experts.<e>.<gate|up|down>_proj.weight
_EXPERT = re.compile(r"(.+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight")


def _fused_experts(tensors: dict, transposed: bool) -> dict:
    """Each layer's experts as two tensors, gate_up_proj [E, 2I, hidden] (gate rows, then up rows)
    and down_proj [E, hidden, I], ``transposed`` [E, hidden, 2I] and [E, I, hidden]; written where the
    layer's first expert tensor was, so the shards keep their order. Weights already fused (Qwen3-VL-MoE)
    are only transposed."""
    experts: dict[str, dict] = {}
    fused = {}
    for name, tensor in tensors.items():
        match = _EXPERT.fullmatch(name)
        if match is None:
            fused[name] = tensor
            continue
        prefix, index, part = match[1], int(match[2]), match[3]
        if prefix not in experts:
            experts[prefix] = {"gate": {}, "up": {}, "down": {}}
            fused[prefix + ".gate_up_proj"] = fused[prefix + ".down_proj"] = None  # their place
        experts[prefix][part][index] = tensor
    for prefix, parts in experts.items():
        order = sorted(parts["down"])
        fused[prefix + ".gate_up_proj"] = torch.stack([torch.cat([parts["gate"][e], parts["up"][e]]) for e in order])
        fused[prefix + ".down_proj"] = torch.stack([parts["down"][e] for e in order])
    if transposed:
        for name in fused:
            if name.endswith((".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")):
                fused[name] = fused[name].transpose(1, 2)
    return fused


def _write_weights(tensors: dict, directory: Path, layout: HubLayout) -> None:
    renamed = {}
    for name, tensor in tensors.items():
        for prefix in layout.clip_towers:
            if name.startswith(prefix):
                name = prefix + CLIP_PREFIX + name[len(prefix):]
        renamed[name] = tensor.contiguous()
    if layout.shards == 1:
        save_file(renamed, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(renamed)
    if len(names) < layout.shards:
        raise ValueError(f"{len(names)} weights cannot fill {layout.shards} shards")
    weight_map = {}
    for shard in range(layout.shards):  # in order, every shard holding some (the index names each file)
        file = layout.shard_name.format(index=shard + 1, count=layout.shards)
        part = {name: renamed[name] for name in names[shard * len(names) // layout.shards:(shard + 1) * len(names) // layout.shards]}
        save_file(part, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(tensor.numel() * tensor.element_size() for tensor in renamed.values())
    _dump({"metadata": {"total_size": total}, "weight_map": weight_map}, directory / "model.safetensors.index.json")


def _write_processor(processor, directory: Path, layout: HubLayout) -> None:
    image = processor.image_processor.to_dict()
    for transient in ("image_processor_type", "processor_class", "_processor_class", "backend"):
        image.pop(transient, None)
    if layout.pixel_limits_top_level:
        size = image.pop("size")
        image["min_pixels"], image["max_pixels"] = size["shortest_edge"], size["longest_edge"]
    image.update(image_processor_type=layout.image_processor_type, processor_class=layout.processor_class)
    _dump(image, directory / "preprocessor_config.json")
    if layout.video_processor_type:
        _write_video_processor(image, directory, layout)
    if layout.processor_config:
        names = layout.processor_config if isinstance(layout.processor_config, tuple) else DEFAULT_PROCESSOR_OPTIONS
        options = {key: getattr(processor, key) for key in names if hasattr(processor, key)}
        _dump({**options, "processor_class": layout.processor_class}, directory / "processor_config.json")
    if processor.chat_template is None:  # a release without one (Video-LLaVA-7B-hf): the family supplies it
        return
    if layout.chat_template_file.endswith(".jinja"):
        (directory / layout.chat_template_file).write_text(processor.chat_template)
    else:
        _dump({"chat_template": processor.chat_template}, directory / layout.chat_template_file)


DEFAULT_PROCESSOR_OPTIONS = ("num_additional_image_tokens", "patch_size", "vision_feature_select_strategy", "num_image_tokens", "vision_aspect_ratio")
# The keys of llava-hf OneVision's video_processor/preprocessor_config.json, an image processor's
# file format naming the video processor class.
LEGACY_VIDEO_KEYS = ("do_convert_rgb", "do_normalize", "do_pad", "do_rescale", "do_resize", "image_mean", "image_std", "resample", "rescale_factor", "size")


def _write_video_processor(image: dict, directory: Path, layout: HubLayout) -> None:
    path = directory / layout.video_processor_file
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout.video_processor_file == "video_preprocessor_config.json":
        video = {key: image[key] for key in ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std") if key in image}
        video.update(processor_class=layout.processor_class, video_processor_type=layout.video_processor_type)
    else:
        video = {key: image[key] for key in LEGACY_VIDEO_KEYS if key in image}
        video.update(processor_class=layout.processor_class, image_processor_type=layout.video_processor_type)
    _dump(video, path)


def _write_tokenizer(tokenizer, directory: Path, layout: HubLayout) -> None:
    """tokenizer.json and tokenizer_config.json as transformers writes them, plus the files
    the repository's tokenizer keeps beside them. (The LLaMA-based repositories also hold a
    SentencePiece ``tokenizer.model``; the tiny byte-level tokenizer has none, and
    transformers reads tokenizer.json first.)"""
    tokenizer.save_pretrained(str(directory))
    model = json.loads((directory / "tokenizer.json").read_text())["model"]
    contents = {
        "special_tokens_map.json": lambda: {
            name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token") if getattr(tokenizer, name, None)
        },
        "added_tokens.json": lambda: {token.content: index for index, token in tokenizer.added_tokens_decoder.items()},
        "vocab.json": lambda: model["vocab"],
    }
    for name in layout.tokenizer_files:
        if name == "merges.txt":
            merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model.get("merges", [])]
            (directory / name).write_text("\n".join(["#version: 0.2", *merges]) + "\n")
        else:
            _dump(contents[name](), directory / name)


def _dump(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
