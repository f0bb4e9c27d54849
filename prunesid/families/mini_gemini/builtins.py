"""Offline built-ins ``tiny-random-mgm`` and ``tiny-random-mgm-hd``: Mini-Gemini's real
geometry with tiny widths, written as the released YanweiLi/MGM-* repositories are.

``tiny-random-mgm`` mirrors YanweiLi/MGM-7B (``model_type`` ``mini_gemini``, the first
releases' name): 336 px low-res views (24 x 24 tokens, CLIP feature layer -2), aux size 768
(a 192 x 192 map, an 8 x 8 window per token). ``tiny-random-mgm-hd`` mirrors MGM-7B-HD under
the renamed ``mgm`` type: aux 1536, ``image_grid`` 2, ``image_global``: 5 views of 576.
Both: a 4-layer CLIP tower, a 4-stage ConvNeXt trunk (8/16/24/32 channels, 80 in all), a
2-layer Llama and a tiny SentencePiece tokenizer.

Their directories hold what the releases hold and nothing more: config.json (the released
keys and tower paths, ``model_zoo/OpenAI/...``), two safetensors shards + index with the CLIP
tower under ``vision_model.``, and the tokenizer as SentencePiece's ``tokenizer.model`` with
``tokenizer_config.json`` and ``special_tokens_map.json`` (no tokenizer.json, preprocessor,
generation or chat-template file). The one addition: ``mm_vision_config`` /
``mm_vision_aux_config`` describe the tiny towers, whose shapes the released tower names
(CLIP ViT-L/14-336, ConvNeXt-L/320) would otherwise fix.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch

from prunesid.family_kit.hub import HubLayout
from prunesid.families.llava.builtins import SEED, _configs
from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.families.mini_gemini.checkpoint import MiniGeminiConfig, build_model, save_original

AUX_TOWER = {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}
# mm_vision_tower / mm_vision_tower_aux as the released config.json files write them
CLIP_TOWER = "model_zoo/OpenAI/clip-vit-large-patch14-336"
CONVNEXT_TOWER = "model_zoo/OpenAI/openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup"


def _write_release(model, processor, directory, layout):
    return save_original(model, directory, processor, shards=layout.shards)


MGM_LAYOUT = HubLayout(repo="YanweiLi/MGM-7B", image_processor_type="CLIPImageProcessor", processor_class="CLIPProcessor", shards=2, writer=_write_release)
MGM_HD_LAYOUT = HubLayout(repo="YanweiLi/MGM-7B-HD", image_processor_type="CLIPImageProcessor", processor_class="CLIPProcessor", shards=2, writer=_write_release)


def sentencepiece_model() -> bytes:
    """A SentencePiece BPE model laid out as Llama's (<unk>, <s>, </s>, then the pieces; a
    dummy-prefix "▁", whitespace escaped), its pieces the printable ASCII characters and a
    newline: any English prompt tokenises without unknowns, any answer prints."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    for piece, kind in (("<unk>", 2), ("<s>", 3), ("</s>", 3)):  # UNKNOWN, CONTROL
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    characters = ["\u2581", "\n"] + sorted(set(string.printable) - set(string.whitespace))
    for rank, character in enumerate(characters):
        proto.pieces.add(piece=character, score=-float(rank), type=1)  # NORMAL
    trainer = proto.trainer_spec
    trainer.model_type, trainer.vocab_size = 2, len(proto.pieces)  # BPE
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    normalizer = proto.normalizer_spec
    normalizer.name, normalizer.add_dummy_prefix, normalizer.remove_extra_whitespaces, normalizer.escape_whitespaces = "identity", True, False, True
    return proto.SerializeToString()


def tokenizer_files() -> dict[str, bytes]:
    """The tokenizer files of a LLaMA-based MGM release (a slow LlamaTokenizer's save)."""
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    config = {
        **specials, "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False, "legacy": False,
        "model_max_length": 4096, "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
    }
    return {
        "tokenizer.model": sentencepiece_model(),
        "tokenizer_config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
        "special_tokens_map.json": (json.dumps(specials, indent=2, sort_keys=True) + "\n").encode(),
    }


# The LLM's keys as the releases' config.json has them (written by transformers 4.36: rope_theta
# and rope_scaling, torch_dtype; none of transformers 5's additions), and the training keys
# MGM's code writes beside its own
_RELEASE_TEXT_KEYS = (
    "attention_bias", "attention_dropout", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size", "initializer_range",
    "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
    "pad_token_id", "pretraining_tp", "rms_norm_eps", "tie_word_embeddings", "use_cache",
)
_TRAINING_KEYS = {
    "freeze_mm_mlp_adapter": False, "mm_projector_lr": None, "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
    "optimize_vision_tower": False, "optimize_vision_tower_aux": False, "tokenizer_model_max_length": 4096,
    "tokenizer_padding_side": "right", "tune_mm_mlp_adapter": False, "use_mm_proj": True,
}


def _release_text_keys(text) -> dict:
    keys = {key: getattr(text, key) for key in _RELEASE_TEXT_KEYS}
    keys.update(rope_theta=text.rope_parameters["rope_theta"], rope_scaling=None, torch_dtype="float32", transformers_version="4.36.2")
    return keys


def _build(model_type: str, image_size_aux: int, image_grid: int, image_global: bool):
    from transformers import CLIPImageProcessorPil

    from prunesid.families.mini_gemini.adapter import CHAT_TEMPLATES, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, MiniGeminiProcessor, load_tokenizer

    files = tokenizer_files()
    with tempfile.TemporaryDirectory() as scratch:  # the tokenizer exactly as loading the release reads it
        for name, content in files.items():
            (Path(scratch) / name).write_bytes(content)
        tokenizer = load_tokenizer(Path(scratch))
    vision, text = _configs(tokenizer)
    raw = {**_release_text_keys(text), **_TRAINING_KEYS}
    raw.update(
        _name_or_path=f"work_dirs/MGM/{'MGM-7B' if image_grid == 1 else 'MGM-7B-HD'}", model_type=model_type, architectures=["MiniGeminiLlamaForCausalLM" if model_type == "mini_gemini" else "MGMLlamaForCausalLM"],
        vocab_size=tokenizer.vocab_size,  # the SentencePiece vocabulary; <image> never reaches the embedding
        mm_vision_tower=CLIP_TOWER, mm_vision_tower_aux=CONVNEXT_TOWER,
        mm_vision_config={key: getattr(vision, key) for key in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
            "hidden_act", "layer_norm_eps", "projection_dim")},
        mm_vision_aux_config=AUX_TOWER, mm_hidden_size=vision.hidden_size, mm_hidden_size_aux=sum(AUX_TOWER["hidden_sizes"]),
        mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, mm_vision_select_feature="patch",
        image_size_aux=image_size_aux, image_grid=image_grid, image_global=image_global, image_aspect_ratio="pad",
    )
    config = MiniGeminiConfig(raw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = build_model(config).eval()
        # LayerNorm / layer-scale defaults would make mining a no-op-like average; random
        # values make every weight matter (a wrong name map changes the output).
        for name, parameter in model.named_parameters():
            if not name.startswith("language_model") and parameter.dim() == 1:
                parameter.data.normal_(0.0, 0.5).add_(1.0 if name.endswith("weight") else 0.0)
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size_aux}, crop_size={"height": image_size_aux, "width": image_size_aux},
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
    )
    return model, MiniGeminiProcessor(tokenizer, image_processor, CHAT_TEMPLATES["vicuna_v1"], files)


@register_builtin("tiny-random-mgm", MGM_LAYOUT)
def build_tiny_mgm():
    """MGM geometry: one 336 px view of 576 tokens mining a 768 px ConvNeXt map."""
    return _build("mini_gemini", 768, 1, False)


@register_builtin("tiny-random-mgm-hd", MGM_HD_LAYOUT)
def build_tiny_mgm_hd():
    """MGM-HD geometry: global + 2 x 2 crops of 336 px (5 x 576 tokens) mining a 1536 px map."""
    return _build("mgm", 1536, 2, True)
