"""Mini-Gemini (MGM, MGM-HD): PruneSID chooses among the mined low-res tokens of each view.

Preprocessing as the original: the image padded to a square with the processor's mean
colour (x 255, integers), resized (PIL bicubic) to ``image_size_aux`` and normalised: the
high-res input. The low-res input is that normalised tensor resized (bilinear) to 336 (MGM)
or 672 (HD, then cut into 2 x 2 crops of 336 plus a global view resized to 336).

Where the press acts: after patch-info mining, before ``mm_projector``. Mining changes each
token with its own high-res window only, so choosing N tokens after mining equals mining
the N chosen ones (tested); the press then sees the tokens the projector would receive.
Importance is the CLS attention of the CLIP layer whose output is the feature layer (the CLS
exists in the tower although the model never feeds it). N per view: HD feeds 5 x N.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BatchEncoding

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, register_family
from prunesid.families.llava.adapter import views_in_sequence
from prunesid.families.mini_gemini.checkpoint import MODEL_TYPES, load_model, read_config
from prunesid.family_kit.towers import encode_views

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# MGM's conversation templates (mgm/conversation.py), as its cli.py and eval scripts pick them:
# vicuna_v1 (Vicuna / Llama-2 models), llama_3 (MGM-8B), chatml_direct (MGM-34B, Yi), gemma
# (MGM-2B), mistral_instruct (Mixtral / Mistral). Images: "<image>\n" each before the text; with
# two or more in the conversation each is preceded by "Image i:", as cli.py splices them.
_COUNT_IMAGES = (
    "{% set ns = namespace(total=0, seen=0) %}{% for message in messages if message['content'] is not string %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{% set ns.total = ns.total + 1 %}{% endfor %}{% endfor %}"
)
_PARTS = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{% set ns.seen = ns.seen + 1 %}"
    "{% if ns.total >= 2 %}Image {{ ns.seen }}:{% endif %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
)


def _template(system: str, user: tuple[str, str], assistant: tuple[str, str], generation: str, later_user: str | None = None) -> str:
    """A chat template: ``system``, then each turn as ``before + content + after``; ``later_user``
    replaces the user's ``before`` after the first turn (mistral_instruct's ``<s>``)."""
    first = user[0] if later_user is None else f"{{% if loop.first %}}{user[0]}{{% else %}}{later_user}{{% endif %}}"
    return (
        _COUNT_IMAGES + system + "{% for message in messages if message['role'] != 'system' %}"
        f"{{% if message['role'] == 'user' %}}{first}{_PARTS}{user[1]}{{% else %}}{assistant[0]}{_PARTS}{assistant[1]}{{% endif %}}"
        f"{{% endfor %}}{{% if add_generation_prompt %}}{generation}{{% endif %}}"
    )


_LLAMA_3_HEADER = "<|start_header_id|>{}<|end_header_id|>\n\n"
CHAT_TEMPLATES = {
    "vicuna_v1": _template(
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. ", ("USER: ", " "), ("ASSISTANT: ", "</s>"), "ASSISTANT:",
    ),
    "llama_3": _template(
        _LLAMA_3_HEADER.format("system") + "You are a helpful language and vision assistant. You are able to understand the "
        "visual content that the user provides, and assist the user with a variety of tasks using natural language.<|eot_id|>",
        # MGM's llama_3 names the assistant's turn "system": what MGM-8B was trained with.
        (_LLAMA_3_HEADER.format("user"), "<|eot_id|>"), (_LLAMA_3_HEADER.format("system"), "<|eot_id|>"), _LLAMA_3_HEADER.format("system"),
    ),
    "chatml_direct": _template(
        "<|im_start|>system\nAnswer the questions.<|im_end|>", ("<|im_start|>user\n", "<|im_end|>"),
        ("<|im_start|>assistant\n", "<|im_end|>"), "<|im_start|>assistant\n",
    ),
    "gemma": _template(
        "", ("<start_of_turn>user\n", "<end_of_turn>\n"), ("<start_of_turn>model\n", "<end_of_turn>\n<eos>"), "<start_of_turn>model\n",
    ),
    "mistral_instruct": _template("", ("[INST] ", " [/INST]"), (" ", " </s>"), "", later_user="<s>[INST] "),
}


def conversation_mode(llm_type: str, vocabulary) -> str:
    """MGM's conv_mode for a checkpoint: by its LLM, and for Llama-architecture models by the
    tokenizer (Llama-3's ``<|eot_id|>``, Yi's ChatML ``<|im_start|>``, else Vicuna)."""
    if llm_type == "gemma":
        return "gemma"
    if llm_type in ("mistral", "mixtral"):
        return "mistral_instruct"
    if "<|eot_id|>" in vocabulary:
        return "llama_3"
    if "<|im_start|>" in vocabulary:
        return "chatml_direct"
    return "vicuna_v1"


class ChunkwiseTokenizer:
    """The checkpoint's tokenizer, tokenising a prompt as MGM's ``tokenizer_image_token`` does:
    each text chunk around ``<image>`` on its own (a SentencePiece tokenizer thus gives each
    chunk its dummy-prefix "▁": ``<image>`` is followed by "▁", "\\n" as in the original), the
    beginning-of-sequence token only before the first. Everything else is the tokenizer's own."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        if name == "_tokenizer":  # not yet set (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)

    def __call__(self, text, *args, **kwargs):
        if not isinstance(text, str) or "<image>" not in text or args or kwargs.get("return_tensors"):
            return self._tokenizer(text, *args, **kwargs)
        image_id = self._tokenizer.convert_tokens_to_ids("<image>")
        first, *rest = text.split("<image>")
        ids = list(self._tokenizer(first, **kwargs)["input_ids"])
        for chunk in rest:
            ids += [image_id] + list(self._tokenizer(chunk, **{**kwargs, "add_special_tokens": False})["input_ids"])
        return BatchEncoding({"input_ids": ids, "attention_mask": [1] * len(ids)})


class MiniGeminiProcessor:
    """Tokenizer, image processor (normalisation and the aux resize) and chat template."""

    def __init__(self, tokenizer, image_processor, chat_template: str, tokenizer_files: dict[str, bytes] | None = None):
        self.tokenizer = tokenizer if isinstance(tokenizer, ChunkwiseTokenizer) else ChunkwiseTokenizer(tokenizer)
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.tokenizer_files = tokenizer_files or {}  # the checkpoint's own tokenizer files, as read (save_original writes them back)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, tokenize: bool = False, **kwargs):
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=add_generation_prompt, tokenize=tokenize, **kwargs
        )


def pad_to_square(image: Image.Image, mean: list[float]) -> Image.Image:
    """The original expand2square: centred on a square of the mean colour (x 255, truncated)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), tuple(int(value * 255) for value in mean))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def low_res_views(aux_pixels: torch.Tensor, size: int, grid: int, with_global: bool) -> torch.Tensor:
    """``[1, 3, A, A]`` normalised -> ``[V, 3, size, size]``: [global,] then the grid's crops row by row."""
    low = F.interpolate(aux_pixels.float(), size=(size * grid, size * grid), mode="bilinear", align_corners=False)
    views = []
    if grid > 1 and with_global:
        views.append(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))
    for row in range(grid):
        for col in range(grid):
            views.append(low[..., row * size:(row + 1) * size, col * size:(col + 1) * size])
    return torch.cat(views, dim=0).to(aux_pixels.dtype)


class MiniGeminiLayout(FamilyLayout):
    """Views of one image: [global,] crops; ``tokens`` each (576), no newlines, no CLS fed."""

    preset = "llava"
    cls_slot = True
    cls_attention = True

    def __init__(self, tokens_per_view: int, grid: int, with_global: bool):
        self.tokens_per_view = tokens_per_view
        self.side = int(round(tokens_per_view ** 0.5))
        self.grid = grid
        self.with_global = grid > 1 and with_global

    @property
    def num_views(self) -> int:
        return self.grid ** 2 + int(self.with_global)

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        return [self.tokens_per_view] * self.num_views

    def unmodified_tokens(self, image_size, modality="image") -> int:
        return self.tokens_per_view * self.num_views

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        width, height = image_size
        side = max(width, height)
        x0, y0 = -((side - width) // 2), -((side - height) // 2)  # the padded square on the image
        grids = []
        if self.with_global:
            grids.append(PatchGrid(self.side, self.side, (x0, y0, x0 + side, y0 + side), "global"))
        step = side / self.grid
        for row in range(self.grid):
            for col in range(self.grid):
                box = (x0 + col * step, y0 + row * step, x0 + (col + 1) * step, y0 + (row + 1) * step)
                grids.append(PatchGrid(self.side, self.side, box, "image" if self.grid == 1 else f"crop {row},{col}"))
        return grids

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        return views_in_sequence(kept, merged, with_cls, False, stride=self.tokens_per_view if len(kept) > 1 else None)


class MiniGemini(Family):
    """A :class:`prunesid.families.mini_gemini.model.MiniGeminiModel` and its processor."""

    def __init__(self, model, processor):
        super().__init__(model, processor)
        config = model.config
        self.layout = MiniGeminiLayout(config.tokens_per_view, config.image_grid, config.image_global)

    def preprocess(self, image: Image.Image) -> dict:
        config, image_processor = self.model.config, self.processor.image_processor
        if config.image_aspect_ratio == "pad":
            image = pad_to_square(image.convert("RGB"), image_processor.image_mean)
        aux = image_processor(images=image, return_tensors="pt")["pixel_values"]
        views = low_res_views(aux, config.image_size, config.image_grid, config.image_global)
        return {"pixel_values": views, "pixel_values_aux": aux}

    def split_inputs(self, inputs: dict) -> list:
        aux = inputs.get("pixel_values_aux")
        if aux is None:
            return []
        views = self.layout.num_views
        return [
            ("image", {"pixel_values": inputs["pixel_values"][i * views:(i + 1) * views], "pixel_values_aux": aux[i:i + 1]},
             (int(aux.shape[-1]), int(aux.shape[-2])))
            for i in range(aux.shape[0])
        ]

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        model = self.model
        tower = model.vision_tower
        views = pixel_inputs["pixel_values"].to(tower.device, tower.dtype)
        out = encode_views(tower, views, model.config.select_layer, "default")
        windows = model.aux_windows(pixel_inputs["pixel_values_aux"].to(tower.device, tower.dtype))
        out.features = model.mine(out.features, windows)
        return out

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.mm_projector(features)

    def generation_inputs(self, input_ids, runs, encoded) -> dict:
        return {"image_features": [run.embeds for run in runs]} if runs else {}


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def load_mini_gemini(path: str, dtype: torch.dtype):
    """``(model, processor)`` from a directory (or Hub id) in the original MGM format."""
    from transformers import CLIPImageProcessorPil

    directory = Path(path) if Path(path).is_dir() else _download(path)
    config = read_config(directory)  # before the weights: a bad config fails fast
    tokenizer = load_tokenizer(directory)
    model = load_model(directory, dtype)
    model.config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    stored = directory / "preprocessor_config.json"
    stats = json.loads(stored.read_text()) if stored.is_file() else {}
    size = model.config.image_size_aux
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=stats.get("image_mean", OPENAI_CLIP_MEAN), image_std=stats.get("image_std", OPENAI_CLIP_STD),
    )
    template = _stored_template(directory) or CHAT_TEMPLATES[conversation_mode(MODEL_TYPES[config.model_type], tokenizer.get_vocab())]
    files = {name: (directory / name).read_bytes() for name in TOKENIZER_FILES if (directory / name).is_file()}
    return model, MiniGeminiProcessor(tokenizer, image_processor, template, files)


def _stored_template(directory: Path) -> str | None:
    """A chat template the directory ships (the releases ship none; a re-export may)."""
    if (directory / "chat_template.jinja").is_file():
        return (directory / "chat_template.jinja").read_text()
    if (directory / "chat_template.json").is_file():
        return json.loads((directory / "chat_template.json").read_text())["chat_template"]
    return None


def load_tokenizer(directory: Path):
    """The checkpoint's tokenizer with an ``<image>`` placeholder (the original splices features
    at id -200; a placeholder token the embedding never sees does the same). The releases ship
    SentencePiece's tokenizer.model and no tokenizer.json: transformers converts it, which needs
    the sentencepiece and protobuf packages; without them, one line saying so."""
    from transformers import AutoTokenizer
    from transformers.utils import is_protobuf_available, is_sentencepiece_available
    from transformers.utils import logging as transformers_logging

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file() and (directory / "tokenizer.model").is_file():
        absent = [name for name, present in (("sentencepiece", is_sentencepiece_available()), ("protobuf", is_protobuf_available())) if not present]
        if absent:
            raise ValueError(
                f"{directory}: this checkpoint's tokenizer is SentencePiece's tokenizer.model: install "
                f"{' and '.join(absent)} (pip install {' '.join(absent)})"
            )
    if not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        raise ValueError(f"{directory} has no tokenizer files (tokenizer.model or tokenizer.json): an incomplete download?")
    # transformers reads config.json on the way and warns that it does not know the model type
    # and that the releases' rope_scaling key is deprecated (true, and harmless here): silenced.
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*rope_scaling")
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
    finally:
        transformers_logging.set_verbosity(level)
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def _download(repo: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.bin", "tokenizer*"]))


for _model_type in MODEL_TYPES:
    register_family(_model_type, None, f"Mini-Gemini ({MODEL_TYPES[_model_type]} LLM)", loader=load_mini_gemini)(MiniGemini)
