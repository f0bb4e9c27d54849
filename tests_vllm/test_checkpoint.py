"""The built-ins rewritten for vLLM's CPU kernels (prunesid/vllm/checkpoint.py), without an engine.

The engine tests load this rewrite from a cache keyed by the module's source, so a bug in it
shows there only on a fresh machine; here every rewrite is done afresh (the cache moved to a
temporary directory) and checked against the source built-in's tensors, computed here
independently. Written against the mutants that survived the engine tests: the shard glob,
the head-norm names, the linear-attention tiling, cuts and width check, and the M-RoPE
sections under ``rope_parameters``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunesid.vllm.checkpoint import ENGINE_HEADS, GDN_HEAD, _widen_head_norms, _widen_linear_attention, _widen_mrope, engine_checkpoint


def _tensors(directory: Path) -> dict:
    found = {}
    for shard in sorted(directory.glob("*.safetensors")):
        found.update(load_file(shard))
    return found


@pytest.mark.parametrize("key", ["rope_scaling", "rope_parameters"])
def test_mrope_sections_widen_at_the_top_and_in_the_text_config(key):
    config = {key: {"mrope_section": [2, 1, 1], "rope_theta": 1e6}, "text_config": {key: {"mrope_section": [4, 2, 2]}}}
    _widen_mrope(config, 2)
    assert config[key] == {"mrope_section": [4, 2, 2], "rope_theta": 1e6}
    assert config["text_config"][key]["mrope_section"] == [8, 4, 4]


def test_a_config_without_mrope_sections_is_left_as_it_is():
    config = {"rope_parameters": {"rope_theta": 1e4}, "rope_scaling": None, "text_config": {"rope_scaling": "linear"}}
    before = json.loads(json.dumps(config))
    _widen_mrope(config, 2)
    assert config == before


def test_head_norms_are_tiled_in_every_shard_and_nothing_else_is(tmp_path):
    norm = torch.arange(16.0)
    save_file({
        "model.layers.0.self_attn.q_norm.weight": norm,
        "model.layers.0.self_attn.k_norm.weight": norm + 100,
        "model.layers.0.input_layernorm.weight": norm + 200,  # per-channel, not per-head
        "model.layers.1.self_attn.q_norm.weight": torch.arange(32.0),  # already another width
    }, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"model.layers.2.self_attn.k_norm.weight": norm + 300}, tmp_path / "model-00002-of-00002.safetensors")
    _widen_head_norms(tmp_path, 16, 2)
    tensors = _tensors(tmp_path)
    assert torch.equal(tensors["model.layers.0.self_attn.q_norm.weight"], torch.cat([norm, norm]))
    assert torch.equal(tensors["model.layers.0.self_attn.k_norm.weight"], torch.cat([norm, norm]) + 100)
    assert torch.equal(tensors["model.layers.2.self_attn.k_norm.weight"], torch.cat([norm, norm]) + 300)
    assert torch.equal(tensors["model.layers.0.input_layernorm.weight"], norm + 200)
    assert torch.equal(tensors["model.layers.1.self_attn.q_norm.weight"], torch.arange(32.0))


def test_head_norms_at_factor_one_leave_the_shards_untouched(tmp_path):
    shard = tmp_path / "model.safetensors"
    save_file({"model.layers.0.self_attn.q_norm.weight": torch.arange(16.0)}, shard)
    before = shard.read_bytes()
    _widen_head_norms(tmp_path, 16, 1)
    assert shard.read_bytes() == before


# Qwen3.5's built-in: 2 key heads and 4 value heads of 16 (key width 32, value width 64).
LINEAR = {"linear_key_head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_value_head_dim": 16}


def _linear_attention_shards(directory: Path) -> dict:
    layer = "model.language_model.layers.0.linear_attn."
    tensors = {
        layer + "in_proj_qkv.weight": torch.arange(128 * 8.0).reshape(128, 8),  # [q 32; k 32; v 64] x hidden
        layer + "conv1d.weight": torch.arange(128 * 4.0).reshape(128, 1, 4),
        layer + "A_log": torch.arange(4.0),
        layer + "dt_bias": torch.arange(4.0) + 10,
        layer + "in_proj_a.weight": torch.arange(32.0).reshape(4, 8),
        layer + "in_proj_b.weight": torch.arange(32.0).reshape(4, 8) + 50,
        layer + "norm.weight": torch.arange(16.0),
    }
    save_file(dict(list(tensors.items())[:4]), directory / "model-00001-of-00002.safetensors")
    save_file(
        {**dict(list(tensors.items())[4:]), "model.language_model.layers.1.self_attn.q_proj.weight": torch.ones(64, 8)},
        directory / "model-00002-of-00002.safetensors",
    )
    return tensors


def test_linear_attention_is_read_as_one_key_and_one_value_head_of_64(tmp_path):
    source = _linear_attention_shards(tmp_path)
    text = dict(LINEAR, hidden_size=64)
    _widen_linear_attention(text, tmp_path)
    assert text == {"linear_key_head_dim": GDN_HEAD, "linear_num_key_heads": 1, "linear_num_value_heads": 1, "linear_value_head_dim": GDN_HEAD, "hidden_size": 64}
    written = _tensors(tmp_path)
    layer = "model.language_model.layers.0.linear_attn."
    for name in ("in_proj_qkv.weight", "conv1d.weight"):
        mixed = source[layer + name]
        query, key, value = mixed[:32], mixed[32:64], mixed[64:]
        assert torch.equal(written[layer + name], torch.cat([query, query, key, key, value])), name
    for name in ("A_log", "dt_bias", "in_proj_a.weight", "in_proj_b.weight"):
        assert torch.equal(written[layer + name], source[layer + name][:1]), name
    assert torch.equal(written[layer + "norm.weight"], torch.arange(16.0).repeat(4))
    assert torch.equal(written["model.language_model.layers.1.self_attn.q_proj.weight"], torch.ones(64, 8))


@pytest.mark.parametrize("head", [None, 64, 128])
def test_linear_attention_the_kernel_takes_already_is_left_as_it_is(tmp_path, head):
    _linear_attention_shards(tmp_path)
    before = {shard.name: shard.read_bytes() for shard in tmp_path.iterdir()}
    text = dict(LINEAR, linear_key_head_dim=head) if head else {"hidden_size": 64}
    expected = dict(text)
    _widen_linear_attention(text, tmp_path)
    assert text == expected
    assert {shard.name: shard.read_bytes() for shard in tmp_path.iterdir()} == before


@pytest.mark.parametrize(("change", "widths"), [
    ({"linear_num_value_heads": 3}, "32 / 48"),  # the value width is not one head of 64
    ({"linear_num_key_heads": 3}, "48 / 64"),  # the key width does not divide 64
])
def test_linear_attention_widths_that_cannot_be_heads_of_64_are_refused_by_width(tmp_path, change, widths):
    _linear_attention_shards(tmp_path)
    with pytest.raises(ValueError, match=f"linear-attention widths {widths} cannot be read as heads of {GDN_HEAD}"):
        _widen_linear_attention({**LINEAR, **change}, tmp_path)


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """engine_checkpoint's cache in a directory of this test's own: every rewrite runs."""
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def test_qwen3_vl_moe_s_rewrite_reads_the_built_in_with_wider_heads(fresh_cache):
    from prunesid.family_kit import builtin_directory

    source = builtin_directory("tiny-random-qwen3-vl-moe")
    target = engine_checkpoint("tiny-random-qwen3-vl-moe")
    assert target.parent == fresh_cache / "prunesid-vllm"
    text = json.loads((target / "config.json").read_text())["text_config"]
    assert {key: text[key] for key in ENGINE_HEADS} == ENGINE_HEADS
    assert text["rope_parameters"]["mrope_section"] == [8, 4, 4]  # [4, 2, 2] at heads of 16
    assert text["norm_topk_prob"] is True  # the release's value, which transformers' config drops
    before, after = _tensors(source), _tensors(target)
    assert set(before) == set(after)
    norms = [name for name in before if name.endswith(("q_norm.weight", "k_norm.weight"))]
    assert norms
    for name in after:
        expected = before[name].repeat(2) if name in norms else before[name]
        assert torch.equal(after[name], expected), name
    assert engine_checkpoint("tiny-random-qwen3-vl-moe") == target  # written once


def test_qwen3_5_s_rewrite_widens_its_linear_attention_and_keeps_its_shard_names(fresh_cache):
    from prunesid.family_kit import builtin_directory

    source = builtin_directory("tiny-random-qwen3.5")
    target = engine_checkpoint("tiny-random-qwen3.5")
    assert sorted(path.name for path in target.iterdir()) == sorted(path.name for path in source.iterdir())
    text = json.loads((target / "config.json").read_text())["text_config"]
    assert (text["linear_key_head_dim"], text["linear_num_key_heads"], text["linear_value_head_dim"], text["linear_num_value_heads"]) == (64, 1, 64, 1)
    assert text["rope_parameters"]["mrope_section"] == [2, 1, 1]  # heads of 32 already: factor 1
    before, after = _tensors(source), _tensors(target)
    widened = [name for name in before if name.endswith("linear_attn.in_proj_qkv.weight")]
    assert widened
    for name in widened:
        query, key, value = before[name].split([32, 32, 64])
        assert torch.equal(after[name], torch.cat([query, query, key, key, value])), name


def test_a_language_model_of_another_width_is_refused_by_name(fresh_cache, monkeypatch):
    import prunesid.vllm.checkpoint as checkpoint

    monkeypatch.setitem(checkpoint.ENGINE_HEADS, "head_dim", 16)
    with pytest.raises(ValueError, match="built-in 'tiny-random': a language model of width 64 cannot be read as"):
        engine_checkpoint("tiny-random")


def test_two_built_ins_share_the_cache_directory(fresh_cache):
    """The second rewrite finds the cache's directory made by the first (exist_ok)."""
    first, second = engine_checkpoint("tiny-random"), engine_checkpoint("tiny-random-qwen3-vl-moe")
    assert first.parent == second.parent == fresh_cache / "prunesid-vllm" and first != second
    assert (first / "config.json").is_file() and (second / "config.json").is_file()


def test_a_config_without_head_dim_takes_the_width_over_the_heads(fresh_cache, monkeypatch):
    """Released configs may leave head_dim out (hidden_size / num_attention_heads): the factor
    stays an integer, so the M-RoPE sections stay integers and the norms are tiled."""
    import shutil

    import prunesid.family_kit as kit

    source = kit.builtin_directory("tiny-random-qwen3-vl-moe")
    copy = fresh_cache / "no-head-dim"
    shutil.copytree(source, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["text_config"]["head_dim"]
    (copy / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(kit, "builtin_directory", lambda name: copy)
    target = engine_checkpoint("tiny-random-qwen3-vl-moe")
    section = json.loads((target / "config.json").read_text())["text_config"]["rope_parameters"]["mrope_section"]
    assert section == [8, 4, 4] and all(type(part) is int for part in section)
    norm = next(name for name in _tensors(copy) if name.endswith("q_norm.weight"))
    assert torch.equal(_tensors(target)[norm], _tensors(copy)[norm].repeat(2))
