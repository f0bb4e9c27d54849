"""A checkpoint directory that cannot be used fails with one ValueError naming the missing
file or package and the fix, never an ImportError or OSError from inside transformers.

Each case copies a built-in's directory (``llava-hf/llava-1.5-7b-hf``'s layout for
``tiny-random``, ``Qwen/Qwen2.5-VL-7B-Instruct``'s for ``tiny-random-qwen2.5-vl``,
``LanguageBind/Video-LLaVA-7B-hf``'s for ``tiny-random-video-llava``) and breaks it the way
an interrupted download or a hand-made copy does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from prunesid import load_vlm
from prunesid.family_kit import processors
from prunesid.family_kit import builtin_directory
from tests.conftest import scene


def copy_of(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(builtin_directory(name), tmp_path / name))


def test_an_intact_copy_loads(tmp_path):
    assert load_vlm(str(copy_of("tiny-random-qwen2.5-vl", tmp_path)), device="cpu").family.preset == "qwen2-vl"


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-video-llava"])
def test_no_preprocessor_config(tmp_path, name):
    directory = copy_of(name, tmp_path)
    (directory / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match=r"has no preprocessor_config.json \(nor an image_processor entry in processor_config.json, .*\): the image processor's settings .* `hf download <repo id> preprocessor_config.json"):
        load_vlm(str(directory), device="cpu")


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-qwen2.5-vl"])
def test_no_weights(tmp_path, name):
    directory = copy_of(name, tmp_path)
    for weights in directory.glob("model*.safetensors*"):
        weights.unlink()
    with pytest.raises(ValueError, match=r"has no weights \(none of model.safetensors, .*\): an incomplete download\?"):
        load_vlm(str(directory), device="cpu")


def test_a_missing_shard_is_named(tmp_path):
    directory = copy_of("tiny-random-video-llava", tmp_path)
    (directory / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ValueError, match=r"lacks 1 of its 3 weight shards \(model-00002-of-00003.safetensors\)"):
        load_vlm(str(directory), device="cpu")


def test_no_tokenizer_files(tmp_path):
    directory = copy_of("tiny-random-qwen2.5-vl", tmp_path)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (directory / name).unlink()
    with pytest.raises(ValueError, match=r"has no tokenizer files \(one of tokenizer.json, tokenizer.model, vocab.json"):
        load_vlm(str(directory), device="cpu")


def test_no_config(tmp_path):
    directory = copy_of("tiny-random", tmp_path)
    (directory / "config.json").unlink()
    with pytest.raises(ValueError, match=r"not a loadable local directory \(no config.json"):
        load_vlm(str(directory), device="cpu")


def test_an_unsupported_model_type_names_the_supported_ones(tmp_path):
    directory = copy_of("tiny-random", tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ValueError, match=r"is a 'bert' model; supported: llava \("):
        load_vlm(str(directory), device="cpu")


def test_an_unknown_processor_class(tmp_path):
    directory = copy_of("tiny-random-qwen2.5-vl", tmp_path)
    config = json.loads((directory / "preprocessor_config.json").read_text())
    (directory / "preprocessor_config.json").write_text(json.dumps({**config, "processor_class": "Qwen9VLProcessor"}))
    with pytest.raises(ValueError, match=r"no processor class 'Qwen9VLProcessor' in transformers"):
        load_vlm(str(directory), device="cpu")


def test_a_package_transformers_needs_is_named_with_the_fix(tmp_path, monkeypatch):
    """With torchvision reported present, the model's own processor is built, and its video
    processor asks for torchvision: the ImportError becomes a message naming the package."""
    if processors.torchvision_available():
        pytest.skip("torchvision is installed: the model's own processor loads")
    monkeypatch.setattr(processors, "torchvision_available", lambda: True)
    directory = copy_of("tiny-random-video-llava", tmp_path)
    with pytest.raises(ValueError, match=r"its processor needs the torchvision package, which is not installed \(`pip install torchvision`\)"):
        load_vlm(str(directory), device="cpu")


def test_the_weights_are_not_read_before_the_processor_is_known_to_load(tmp_path, monkeypatch):
    """A broken processor fails before gigabytes of weights are read."""
    directory = copy_of("tiny-random", tmp_path)
    (directory / "preprocessor_config.json").unlink()
    read = []
    from transformers import LlavaForConditionalGeneration

    monkeypatch.setattr(LlavaForConditionalGeneration, "from_pretrained", classmethod(lambda cls, *a, **k: read.append(a)))
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        load_vlm(str(directory), device="cpu")
    assert read == []


def test_a_family_outside_transformers_loads_through_its_own_loader(tmp_path):
    """register_family(..., loader=...): load_vlm reads model_type from config.json (no
    transformers config class for it) and hands the directory to the family's loader."""
    from prunesid.family_kit import builtin_models
    from prunesid.family_kit.base import FAMILIES, register_family
    from prunesid.families.llava.adapter import SingleView

    directory = tmp_path / "toy"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "toy_vlm"}))
    calls = []

    def load_toy(path, dtype):
        calls.append((path, dtype))
        model, processor = builtin_models()["tiny-random"].build()
        model.config.model_type = "toy_vlm"
        return model, processor

    register_family("toy_vlm", None, "a toy family with its own checkpoint format", loader=load_toy)(SingleView)
    try:
        vlm = load_vlm(str(directory), device="cpu", dtype="float32")
        assert calls == [(str(directory), torch.float32)]
        assert vlm.chat(scene(320, 240), "What is it?", max_new_tokens=2).visual_tokens == [576]
    finally:
        FAMILIES.pop("toy_vlm")


def test_a_family_gives_a_model_class_or_a_loader():
    from prunesid.family_kit.base import register_family

    with pytest.raises(ValueError, match="give a model_class or a loader"):
        register_family("toy_vlm", None, "neither")
    with pytest.raises(ValueError, match="give a model_class or a loader"):
        register_family("toy_vlm", "LlavaForConditionalGeneration", "both", loader=lambda path, dtype: None)
