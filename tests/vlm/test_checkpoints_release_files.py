"""The built-ins' directories hold what the repositories they name publish, where those differ
from what transformers 5's save_pretrained writes: Qwen3-VL-MoE's experts in the release's
layout (``gate_up_proj [E, hidden, 2I]``, ``down_proj [E, I, hidden]``, transposed against
transformers' modules), Qwen3.5's ``chat_template.jinja`` and its multi-token-prediction
weights ``mtp.*``. Loading each directory gives the model it was written from, weight for
weight, so the built-ins walk the code a real download walks (transformers' transpose on load,
its skipping of ``mtp.*``, the template read from the .jinja file)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from prunesid import load_vlm
from prunesid.vlm.builtins import BUILTINS, builtin_directory


def _stored_shapes(directory, suffix: str) -> dict[str, list[int]]:
    shapes = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            shapes.update({name: weights.get_slice(name).get_shape() for name in weights.keys() if name.endswith(suffix)})
    return shapes


def _assert_loads_to_the_built_model(name: str) -> None:
    loaded = load_vlm(str(builtin_directory(name)), device="cpu").model.state_dict()
    built, _ = BUILTINS[name].build()
    expected = built.state_dict()
    assert set(loaded) == set(expected)
    for key, tensor in loaded.items():
        assert torch.equal(tensor, expected[key]), key


def test_qwen3_vl_moe_experts_are_written_as_released():
    """Catches experts written in transformers' internal layout ([E, 2I, hidden], [E, hidden, I]):
    a loader that forgot the release's transpose would then pass on the built-in alone."""
    name = "tiny-random-qwen3-vl-moe"
    directory = builtin_directory(name)
    text = json.loads((directory / "config.json").read_text())["text_config"]
    experts, hidden, inner = text.get("num_experts", text.get("num_local_experts")), text["hidden_size"], text["moe_intermediate_size"]
    assert 2 * inner != hidden  # the two layouts differ in shape
    gate_up = _stored_shapes(directory, ".mlp.experts.gate_up_proj")
    down = _stored_shapes(directory, ".mlp.experts.down_proj")
    assert gate_up and set(map(tuple, gate_up.values())) == {(experts, hidden, 2 * inner)}
    assert down and set(map(tuple, down.values())) == {(experts, inner, hidden)}
    _assert_loads_to_the_built_model(name)


@pytest.mark.parametrize("name", ["tiny-random-qwen3.5", "tiny-random-qwen3.5-moe"])
def test_qwen3_5_ships_its_template_as_jinja_and_its_mtp_weights(name):
    directory = builtin_directory(name)
    assert (directory / "chat_template.jinja").is_file() and not (directory / "chat_template.json").exists()
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    assert {"mtp.fc.weight", "mtp.layers.0.self_attn.q_proj.weight"} <= set(weight_map)
    vlm = load_vlm(str(directory), device="cpu")
    assert vlm.processor.chat_template == (directory / "chat_template.jinja").read_text()
    _assert_loads_to_the_built_model(name)
