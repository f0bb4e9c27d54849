"""The built-ins' weights are named, sharded and laid out as the repositories they name publish
them, where that differs from transformers 5's save_pretrained: Qwen3.5's shards
``model.safetensors-000NN-of-000MM.safetensors``, its multi-token-prediction weights ``mtp.*``
(which transformers skips on load), Qwen3.5-MoE's main experts fused in transformers' layout
beside the MTP layer's experts one tensor each, Qwen3-VL-MoE's experts fused and transposed.
Loading each directory gives the model it was written from, weight for weight."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from safetensors import safe_open

from prunesid import load_vlm
from prunesid.family_kit import builtin_directory
from tests.vlm.test_checkpoints_release_files import assert_loads_to_the_built_model


def _shards(count: int, name: str = "model-{index:05d}-of-{count:05d}.safetensors") -> set[str]:
    return {name.format(index=index, count=count) for index in range(1, count + 1)} | {"model.safetensors.index.json"}


QWEN3_5_SHARD = "model.safetensors-{index:05d}-of-{count:05d}.safetensors"
# Each repository's weight files (the tiny built-ins keep the releases' shard counts).
RELEASE_WEIGHTS = {
    # llava-hf/llava-1.5-7b-hf (tree page at 95f2cf3), LanguageBind/Video-LLaVA-7B-hf (main, 4cf9d8c)
    "tiny-random": _shards(3),
    "tiny-random-video-llava": _shards(3),
    # llava-hf/llava-v1.6-mistral-7b-hf: github.com/fuliucansheng/unitorch's pretrained_llava_infos fetches
    # resolve/main/model-{i:05d}-of-00004.safetensors for i in 1..4 (the index is implied)
    "tiny-random-next": _shards(4),
    # Qwen/Qwen2-VL-7B-Instruct (tree page at a7a06a1); Qwen/Qwen2.5-VL-7B-Instruct @ cc594898 (the manifest in
    # github.com/yuzastudio6-cyber/Reedkt, docs/qwen2-5-vl-7b-controlled-private-download-manifest.md)
    "tiny-random-qwen2-vl": _shards(5),
    "tiny-random-qwen2.5-vl": _shards(5),
    # Qwen/Qwen3-VL-8B-Instruct: model-0000N-of-00004 in the hash list of its ModelScope copy (medium)
    "tiny-random-qwen3-vl": _shards(4),
    # Qwen/Qwen3-VL-30B-A3B-Instruct @ 9c4b90e1: the index quoted in QwenLM/Qwen3-VL issue #1588
    # ("lm_head.weight": "model-00013-of-00013.safetensors"); 13 shards, 882 tensors
    "tiny-random-qwen3-vl-moe": _shards(13),
    # Qwen/Qwen3.5-27B @ fc05daec (11 shards), Qwen/Qwen3.5-35B-A3B @ 59d61f3c (14): named
    # model.safetensors-000NN-of-000MM.safetensors, as every Qwen3.5 release
    "tiny-random-qwen3.5": _shards(11, QWEN3_5_SHARD),
    "tiny-random-qwen3.5-moe": _shards(14, QWEN3_5_SHARD),
}
# The MTP layer's tensors besides its MLP (fc, norms, attention), as in both Qwen3.5 releases.
MTP_HEAD = {
    "mtp.fc.weight", "mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight", "mtp.norm.weight",
    "mtp.layers.0.input_layernorm.weight", "mtp.layers.0.post_attention_layernorm.weight",
    *(f"mtp.layers.0.self_attn.{name}.weight" for name in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")),
}


def _mlp(prefix: str) -> set[str]:
    return {f"{prefix}.{projection}_proj.weight" for projection in ("gate", "up", "down")}


def _mtp_names(experts: int | None) -> set[str]:
    """The release's mtp.* tensors: Qwen3.5-27B's dense MLP, or Qwen3.5-35B-A3B's router, experts one
    tensor each, shared expert and its gate."""
    if experts is None:
        return MTP_HEAD | _mlp("mtp.layers.0.mlp")
    routed = set().union(*(_mlp(f"mtp.layers.0.mlp.experts.{expert}") for expert in range(experts)))
    shared = _mlp("mtp.layers.0.mlp.shared_expert") | {"mtp.layers.0.mlp.gate.weight", "mtp.layers.0.mlp.shared_expert_gate.weight"}
    return MTP_HEAD | routed | shared


def _stored(directory, keep=lambda name: True) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    stored = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            stored.update({name: (tuple(weights.get_slice(name).get_shape()), weights.get_slice(name).get_dtype()) for name in weights.keys() if keep(name)})
    return stored


def _text_config(directory) -> dict:
    return json.loads((directory / "config.json").read_text())["text_config"]


@pytest.mark.parametrize("name", sorted(RELEASE_WEIGHTS))
def test_the_weights_are_sharded_and_named_as_released(name):
    """Catches a shard named other than the release's (Qwen3.5's model-000NN-of-... instead of
    model.safetensors-000NN-of-...), a shard count changed, and a shard file the index does not name
    (an empty last shard)."""
    directory = builtin_directory(name)
    files = {path.name for path in directory.iterdir() if path.name.endswith((".safetensors", ".safetensors.index.json"))}
    assert files == RELEASE_WEIGHTS[name]
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(weight_map.values()) == files - {"model.safetensors.index.json"}
    assert set(weight_map) == set(_stored(directory))


def test_qwen3_vl_moe_experts_are_written_as_released():
    """Catches experts written in transformers' internal layout ([E, 2I, hidden], [E, hidden, I]):
    a loader that forgot the release's transpose would then pass on the built-in alone."""
    name = "tiny-random-qwen3-vl-moe"
    directory = builtin_directory(name)
    text = _text_config(directory)
    experts, hidden, inner = text.get("num_experts", text.get("num_local_experts")), text["hidden_size"], text["moe_intermediate_size"]
    assert 2 * inner != hidden  # the two layouts differ in shape
    stored = _stored(directory, lambda weight: ".mlp.experts." in weight)
    assert {shape for weight, (shape, _) in stored.items() if weight.endswith(".gate_up_proj")} == {(experts, hidden, 2 * inner)}
    assert {shape for weight, (shape, _) in stored.items() if weight.endswith(".down_proj")} == {(experts, inner, hidden)}
    assert len(stored) == 2 * text["num_hidden_layers"]
    assert_loads_to_the_built_model(name)


def test_qwen3_5_moe_main_experts_are_fused_as_released():
    """Qwen3.5-35B-A3B's index holds each main layer's experts as two tensors in transformers'
    layout, mlp.experts.gate_up_proj [E, 2I, hidden] and down_proj [E, hidden, I] ([256, 1024, 2048]
    and [256, 2048, 512] in the release). Catches them written one tensor per expert, as
    save_pretrained does (a loader fusing them would then pass on the built-in alone), or transposed."""
    name = "tiny-random-qwen3.5-moe"
    directory = builtin_directory(name)
    text = _text_config(directory)
    experts, hidden, inner = text["num_experts"], text["hidden_size"], text["moe_intermediate_size"]
    stored = _stored(directory, lambda weight: ".mlp.experts." in weight and not weight.startswith("mtp."))
    layers = text["num_hidden_layers"]
    assert {weight: shape for weight, (shape, _) in stored.items()} == {
        **{f"model.language_model.layers.{layer}.mlp.experts.gate_up_proj": (experts, 2 * inner, hidden) for layer in range(layers)},
        **{f"model.language_model.layers.{layer}.mlp.experts.down_proj": (experts, hidden, inner) for layer in range(layers)},
    }
    assert_loads_to_the_built_model(name)


@pytest.mark.parametrize("name", ["tiny-random-qwen3.5", "tiny-random-qwen3.5-moe"])
def test_qwen3_5_carries_the_releases_mtp_weights_and_loads_without_them(name, caplog):
    """The MTP layer as the releases carry it (BF16): 15 tensors in the dense 27B, with the MLP's
    gate, up and down projections; 785 in the 35B-A3B (256 experts one tensor each, the router, the
    shared expert and its gate). Catches the MTP MLP dropped, the MoE one written as a dense MLP or
    with fused experts, and a load that takes them (or complains: warnings are errors here, and
    transformers logs no unexpected weight): the directory loads to exactly the model written."""
    directory = builtin_directory(name)
    text = _text_config(directory)
    experts = text.get("num_experts")
    assert len(_mtp_names(None)) == 15 and len(_mtp_names(256)) == 785  # the releases' counts
    stored = _stored(directory, lambda weight: weight.startswith("mtp."))
    assert set(stored) == _mtp_names(experts)
    assert {dtype for _, dtype in stored.values()} == {"BF16"}
    inner = text["moe_intermediate_size"] if experts else text["intermediate_size"]
    prefix = "mtp.layers.0.mlp.experts.0" if experts else "mtp.layers.0.mlp"
    assert stored[f"{prefix}.gate_proj.weight"][0] == (inner, text["hidden_size"])
    assert stored[f"{prefix}.down_proj.weight"][0] == (text["hidden_size"], inner)
    transformers_log = logging.getLogger("transformers")  # it does not propagate to the root logger
    transformers_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="transformers"), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert_loads_to_the_built_model(name)
    finally:
        transformers_log.removeHandler(caplog.handler)
    assert not [record for record in caplog.records if "mtp" in record.getMessage() or "UNEXPECTED" in record.getMessage()]
    assert not any(weight.startswith("mtp") for weight in load_vlm(str(directory), device="cpu").model.state_dict())
