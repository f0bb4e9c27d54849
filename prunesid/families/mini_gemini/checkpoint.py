"""Mini-Gemini checkpoints in their original format (dvlab-research/MGM, the YanweiLi/MGM-* repositories).

``config.json`` is the language model's configuration plus MGM's keys (``mm_vision_tower``,
``mm_vision_tower_aux``, ``mm_hidden_size(_aux)``, ``mm_projector_type``,
``mm_vision_select_layer``, ``image_size_aux``, ``image_grid``, ``image_global``,
``image_aspect_ratio``); ``model_type`` is ``mini_gemini`` / ``mini_gemini_gemma`` (the first
releases) or ``mgm`` / ``mgm_gemma`` / ``mgm_mistral`` / ``mgm_mixtral``. Weights keep the
original names (``model.vision_tower.vision_tower.vision_model.*``: MGM wraps transformers
4.3x's ``CLIPVisionModel``, whose weights sit under ``vision_model.``; exports of newer code
write them flat, ``model.vision_tower.vision_tower.embeddings.*``, and both are read;
``model.vision_tower_aux.vision_stem.*`` / ``vision_stages.*`` in timm's ConvNeXt names,
``model.mm_projector.*``, ``model.vlm_uni_{query,aux,val}_projector.*``, the LLM's
``model.*`` and ``lm_head.*``) in safetensors or PyTorch ``.bin`` shards, mapped here by
name onto :class:`MiniGeminiModel` and loaded strictly: a missing, unknown or misshapen
weight is a ValueError naming it. A tower the shards lack is read from its own repository
(``prunesid.families.mini_gemini.towers``), as MGM's own loader does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, GenerationConfig

from prunesid.families.mini_gemini.model import CLIP_L_336, CONVNEXT_LARGE, MiniGeminiModel
from prunesid.families.mini_gemini.towers import AUX_PREFIX, CLIP_PREFIX, read_tower, tower_directory

# model_type -> the transformers model type of its language model
MODEL_TYPES = {
    "mini_gemini": "llama", "mgm": "llama", "mini_gemini_gemma": "gemma", "mgm_gemma": "gemma",
    "mgm_mistral": "mistral", "mgm_mixtral": "mixtral",
}
MGM_KEYS = (
    "mm_vision_tower", "mm_vision_tower_aux", "mm_hidden_size", "mm_hidden_size_aux", "mm_projector_type",
    "mm_vision_select_layer", "mm_vision_select_feature", "image_size_aux", "image_grid", "image_global",
    "image_aspect_ratio", "mm_vision_config", "mm_vision_aux_config", "image_token_index",
    # what MGM's training writes beside them (LLaVA's keys): no bearing on inference
    "freeze_mm_mlp_adapter", "mm_projector_lr", "mm_use_im_patch_token", "mm_use_im_start_end", "optimize_vision_tower",
    "optimize_vision_tower_aux", "tokenizer_model_max_length", "tokenizer_padding_side", "tune_mm_mlp_adapter", "use_mm_proj",
    "mm_patch_merge_type", "unfreeze_mm_vision_tower",
)

# One table of weight names, read both ways: (original, native), where {rest} is the rest of a
# name, {stage} {block} {i} numbers and {suffix} ".weight", ".bias" or nothing. Reading, the
# first original that matches maps a weight; writing, the first native that matches (so an
# export writes the releases' CLIP names, under vision_model.).
_AUX_BLOCK = {"conv_dw": "dwconv", "norm": "layernorm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2", "gamma": "layer_scale_parameter"}
NAMES = [
    ("model.vision_tower.vision_tower.vision_model.{rest}", "vision_tower.{rest}"),  # transformers 4.3x (the releases)
    ("model.vision_tower.vision_tower.{rest}", "vision_tower.{rest}"),  # flat: exports of transformers 5
    ("model.vision_tower_aux.vision_stem.0.{rest}", "aux_tower.embeddings.patch_embeddings.{rest}"),
    ("model.vision_tower_aux.vision_stem.1.{rest}", "aux_tower.embeddings.layernorm.{rest}"),
    ("model.vision_tower_aux.vision_stages.{stage}.downsample.{i}.{rest}", "aux_tower.stages.{stage}.downsampling_layer.{i}.{rest}"),
    *[
        (f"model.vision_tower_aux.vision_stages.{{stage}}.blocks.{{block}}.{old}{{suffix}}", f"aux_tower.stages.{{stage}}.layers.{{block}}.{new}{{suffix}}")
        for old, new in _AUX_BLOCK.items()
    ],
    ("model.mm_projector.{rest}", "mm_projector.{rest}"),
    *[(f"model.vlm_uni_{kind}_projector.{{rest}}", f"{kind}_projector.{{rest}}") for kind in ("query", "aux", "val")],
    ("lm_head.{rest}", "language_model.lm_head.{rest}"),
    ("model.{rest}", "language_model.model.{rest}"),
]
_FIELDS = {"rest": r".+", "stage": r"\d+", "block": r"\d+", "i": r"\d+", "suffix": r"\.weight|\.bias|"}


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # text, field, text, field, ...
    return re.compile("".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>{_FIELDS[part]})" for index, part in enumerate(parts)))


_READ = [(_pattern(original), native) for original, native in NAMES]
_WRITE = [(_pattern(native), original) for original, native in NAMES]


def _renamed(name: str, rules) -> str | None:
    for pattern, template in rules:
        found = pattern.fullmatch(name)
        if found:
            return template.format(**found.groupdict())
    return None


# Buffers older transformers saved with the weights; recomputed here.
IGNORED = re.compile(r".*(\.position_ids|rotary_emb\.inv_freq)$")


class MiniGeminiConfig:
    """The parsed ``config.json``: the LLM's transformers config and MGM's vision settings."""

    def __init__(self, raw: dict, source: str = "config.json"):
        model_type = raw.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"{source}: model_type {model_type!r} is not a Mini-Gemini type ({', '.join(MODEL_TYPES)})")
        self.raw = dict(raw)
        self.model_type = model_type
        self._name_or_path = ""  # the directory it was read from (transformers' name for it)
        text = {key: value for key, value in raw.items() if key not in MGM_KEYS and key not in ("model_type", "architectures")}
        if "rope_scaling" in text and text["rope_scaling"] is None:
            del text["rope_scaling"]  # the releases' "no scaling" (transformers 5 warns about the key itself)
        self.text_config = CONFIG_MAPPING[MODEL_TYPES[model_type]](**text)
        projector = raw.get("mm_projector_type", "mlp2x_gelu")
        if projector != "mlp2x_gelu":
            raise ValueError(f"{source}: mm_projector_type {projector!r} is not supported (Mini-Gemini uses 'mlp2x_gelu')")
        self.vision = dict(raw.get("mm_vision_config") or _known(raw.get("mm_vision_tower"), "clip-vit-large-patch14-336", CLIP_L_336, "mm_vision_tower", source))
        self.aux = dict(raw.get("mm_vision_aux_config") or _known(raw.get("mm_vision_tower_aux"), "convnext-large-d-320", CONVNEXT_LARGE, "mm_vision_tower_aux", source))
        for key, expected in (("mm_hidden_size", self.vision["hidden_size"]), ("mm_hidden_size_aux", sum(self.aux["hidden_sizes"]))):
            if key in raw and raw[key] != expected:
                raise ValueError(f"{source}: {key} is {raw[key]} but the tower it names has {expected} channels")
        self.select_layer = int(raw.get("mm_vision_select_layer", -2))
        self.image_size = int(self.vision["image_size"])
        self.image_size_aux = int(raw.get("image_size_aux", 768))
        self.image_grid = int(raw.get("image_grid", 1))
        self.image_global = bool(raw.get("image_global", False))
        self.image_aspect_ratio = raw.get("image_aspect_ratio", "pad")
        self.tokens_per_view = (self.image_size // self.vision["patch_size"]) ** 2
        self.image_token_id = raw.get("image_token_index")
        self.scale_image_features = MODEL_TYPES[model_type] == "gemma"
        cells = self.image_size_aux // 4 // self.image_grid
        if cells % int(self.tokens_per_view ** 0.5):
            raise ValueError(f"{source}: image_size_aux {self.image_size_aux} does not give every low-res token a whole window")

    def to_dict(self) -> dict:
        return dict(self.raw)


def _known(name, marker: str, shape: dict, key: str, source: str) -> dict:
    if isinstance(name, str) and marker in name.lower().replace("_", "-"):
        return shape
    raise ValueError(f"{source}: {key} {name!r} is not a tower this loader knows (expected a name containing {marker!r})")


def native_name(original: str) -> str | None:
    return _renamed(original, _READ)


def original_name(native: str) -> str:
    """The inverse of :func:`native_name` (what an export writes)."""
    found = _renamed(native, _WRITE)
    if found is not None:
        return found
    raise ValueError(f"no original name for {native!r}")


def build_model(config: MiniGeminiConfig) -> MiniGeminiModel:
    return MiniGeminiModel(config, AutoModelForCausalLM.from_config(config.text_config))


def read_config(directory: Path) -> MiniGeminiConfig:
    path = Path(directory) / "config.json"
    config = MiniGeminiConfig(json.loads(path.read_text()), str(path))
    config._name_or_path = str(directory)
    return config


WEIGHT_FORMATS = {"safetensors": ("model", ".safetensors"), "bin": ("pytorch_model", ".bin")}


def weight_files(directory: Path) -> list[Path]:
    """The checkpoint's weight files: safetensors (one file or shards) first, else PyTorch ``.bin``
    (MGM's first releases); ValueError naming what is missing."""
    directory = Path(directory)
    for stem, suffix in WEIGHT_FORMATS.values():
        index = directory / f"{stem}{suffix}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as error:
                raise ValueError(f"{index} is not a valid weight index: {error}") from error
            missing = [shard for shard in shards if not (directory / shard).is_file()]
            if missing:
                raise ValueError(f"{directory} lacks {len(missing)} of its {len(shards)} weight shards ({', '.join(missing)}): an incomplete download?")
            return [directory / shard for shard in shards]
        files = sorted(directory.glob(f"{stem}*{suffix}"))
        if files:
            return files
    raise ValueError(f"{directory} has no weights (model*.safetensors or pytorch_model*.bin): an incomplete download?")


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in weight_files(Path(directory)):
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as weights:
                tensors.update({name: weights.get_tensor(name) for name in weights.keys()})
        else:
            try:
                tensors.update(torch.load(str(path), map_location="cpu", weights_only=True))
            except Exception as error:  # not a torch file, or pickled objects beyond tensors
                raise ValueError(f"{path} cannot be read as a PyTorch weight file: {error}") from error
    return tensors


def add_missing_towers(tensors: dict[str, torch.Tensor], config: MiniGeminiConfig, directory: Path) -> None:
    """Where the shards hold none of a tower's weights, read them from the tower's own repository."""
    for role, prefix, key in (("clip", CLIP_PREFIX, "mm_vision_tower"), ("aux", AUX_PREFIX, "mm_vision_tower_aux")):
        if not any(name.startswith(prefix) for name in tensors):
            tensors.update(read_tower(tower_directory(str(config.raw.get(key)), role, Path(directory)), role))


_MIXTRAL_EXPERT = re.compile(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight")


def fuse_mixtral_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MGM-8x7B's Mixtral as transformers 4.36 saved it (``block_sparse_moe.gate``, one
    ``experts.{e}.w1/w2/w3`` per expert) in transformers 5's layout (``mlp.gate``, each layer's
    experts fused: ``gate_up_proj [E, 2I, H]`` = w1 then w3 per expert, ``down_proj [E, H, I]``),
    as transformers' own Mixtral conversion does on load."""
    experts: dict[int, dict[str, dict[int, torch.Tensor]]] = {}
    fused = {}
    for name, tensor in tensors.items():
        match = _MIXTRAL_EXPERT.fullmatch(name)
        if match:
            layer, expert, part = int(match.group(1)), int(match.group(2)), match.group(3)
            experts.setdefault(layer, {}).setdefault(part, {})[expert] = tensor
        else:
            fused[name.replace(".block_sparse_moe.gate.", ".mlp.gate.")] = tensor
    for layer, parts in experts.items():
        count = len(parts.get("w1", {}))
        if any(sorted(parts.get(part, {})) != list(range(count)) for part in ("w1", "w2", "w3")):
            raise ValueError(f"layer {layer} of the Mixtral LLM lacks some of its experts' w1 / w2 / w3 weights")
        gate, up, down = ([parts[part][index] for index in range(count)] for part in ("w1", "w3", "w2"))
        fused[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = torch.cat([torch.stack(gate), torch.stack(up)], dim=1)
        fused[f"model.layers.{layer}.mlp.experts.down_proj"] = torch.stack(down)
    return fused


def split_mixtral_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`fuse_mixtral_experts`: what the MGM-8x7B releases hold."""
    split = {}
    for name, tensor in tensors.items():
        match = re.fullmatch(r"model\.layers\.(\d+)\.mlp\.(gate\.weight|experts\.gate_up_proj|experts\.down_proj)", name)
        if not match:
            split[name] = tensor
            continue
        prefix, part = f"model.layers.{match.group(1)}.block_sparse_moe", match.group(2)
        if part == "gate.weight":
            split[f"{prefix}.gate.weight"] = tensor
        elif part == "experts.down_proj":
            split.update({f"{prefix}.experts.{e}.w2.weight": tensor[e].contiguous() for e in range(tensor.shape[0])})
        else:
            gate, up = tensor.chunk(2, dim=1)
            for e in range(tensor.shape[0]):
                split[f"{prefix}.experts.{e}.w1.weight"] = gate[e].contiguous()
                split[f"{prefix}.experts.{e}.w3.weight"] = up[e].contiguous()
    return split


def _listed(names, limit: int = 3) -> str:
    """At most ``limit`` names, then how many more: one readable line however many there are."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_weights(model: MiniGeminiModel, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Map every weight by name and load strictly; ValueError naming each problem."""
    expected = model.state_dict()
    mapped, unknown = {}, []
    for name, tensor in tensors.items():
        if IGNORED.fullmatch(name):
            continue
        native = native_name(name)
        if native is None or native not in expected:
            unknown.append(name)
        else:
            mapped[native] = tensor
    tied = {"language_model.lm_head.weight"} if getattr(model.config.text_config, "tie_word_embeddings", False) else set()
    missing = [original_name(name) for name in expected if name not in mapped and name not in tied]
    shapes = [
        f"{original_name(name)} is {tuple(tensor.shape)}, the model needs {tuple(expected[name].shape)}"
        for name, tensor in mapped.items() if tensor.shape != expected[name].shape
    ]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown weights (no place in the model): {_listed(sorted(unknown))}")
    if missing:
        problems.append(f"{len(missing)} missing weights: {_listed(missing)}")
    if shapes:
        problems.append(f"wrong shapes: {_listed(shapes)}")
    if problems:
        raise ValueError(f"{source} cannot be loaded as a Mini-Gemini checkpoint: " + "; ".join(problems))
    model.load_state_dict(mapped, strict=not tied)
    if tied:
        model.language_model.tie_weights()


def load_model(directory: str | Path, dtype: torch.dtype = torch.float32) -> MiniGeminiModel:
    config = read_config(Path(directory))
    tensors = read_weights(Path(directory))
    if MODEL_TYPES[config.model_type] == "mixtral":
        tensors = fuse_mixtral_experts(tensors)
    add_missing_towers(tensors, config, Path(directory))  # before building: a missing tower fails fast
    model = build_model(config)
    load_weights(model, tensors, str(directory))
    if (Path(directory) / "generation_config.json").is_file():
        model.language_model.generation_config = GenerationConfig.from_pretrained(str(directory))
    return model.to(dtype).eval()


def save_original(
    model: MiniGeminiModel, directory: str | Path, processor=None, *, shards: int = 2, weight_format: str = "safetensors",
    towers: bool = True,
) -> Path:
    """Write ``model`` as the YanweiLi/MGM-* repositories publish it: config.json, the weights in
    ``shards`` files + index (``weight_format`` safetensors or MGM's first ``bin``), the CLIP
    tower under ``vision_model.``, and, given the processor, its tokenizer files as loaded
    (``tokenizer.model``, ``tokenizer_config.json``, ``special_tokens_map.json``). No generation,
    preprocessor or chat-template file: the releases have none. ``towers=False`` leaves both
    towers out of the weights (they then come from the towers' own repositories)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
    tensors = {original_name(name): tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    if not towers:
        tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith((CLIP_PREFIX, AUX_PREFIX))}
    if getattr(model.config.text_config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # the embedding's (Gemma): not stored twice
    if MODEL_TYPES[model.config.model_type] == "mixtral":
        tensors = split_mixtral_experts(tensors)
    _write_shards(tensors, directory, shards, weight_format)
    for name, content in (getattr(processor, "tokenizer_files", None) or {}).items():
        (directory / name).write_bytes(content)
    return directory


def _write_shards(tensors: dict[str, torch.Tensor], directory: Path, shards: int, weight_format: str) -> None:
    stem, suffix = WEIGHT_FORMATS[weight_format]

    def write(part: dict, path: Path) -> None:
        if suffix == ".safetensors":
            save_file(part, str(path), metadata={"format": "pt"})
        else:
            torch.save(part, str(path))

    if shards == 1:
        write(tensors, directory / f"{stem}{suffix}")
        return
    names = list(tensors)
    per_shard = -(-len(names) // shards)
    weight_map = {}
    for shard in range(shards):
        file = f"{stem}-{shard + 1:05d}-of-{shards:05d}{suffix}"
        part = {name: tensors[name] for name in names[shard * per_shard:(shard + 1) * per_shard]}
        write(part, directory / file)
        weight_map.update(dict.fromkeys(part, file))
    total = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / f"{stem}{suffix}.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
