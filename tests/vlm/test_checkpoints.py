"""Checkpoints laid out as their Hub repositories load through ``load_vlm(directory)`` in this
environment (no torchvision) and feed what the in-memory model feeds.

Each fixture writes a tiny model into a directory with the file names and configuration keys
of one real repository (read from its file list and configs on the Hub):

- ``llava-hf/llava-1.5-7b-hf``: 3 weight shards + index, CLIP weights under
  ``vision_tower.vision_model``, ``image_token_index``, ``CLIPImageProcessor``,
  ``processor_config.json``, LLaMA tokenizer files;
- ``llava-hf/llava-v1.6-mistral-7b-hf``: the same with 4 shards and ``LlavaNextImageProcessor``;
- ``llava-hf/llava-interleave-qwen-0.5b-hf`` (the demo's CPU default): one
  ``model.safetensors``, a SigLIP tower, ``SiglipImageProcessor``, Qwen tokenizer files
  (vocab.json, merges.txt) beside added_tokens.json and special_tokens_map.json;
- ``Qwen/Qwen2-VL-7B-Instruct`` and ``Qwen/Qwen2.5-VL-7B-Instruct``: 5 shards, a flat
  config.json (the LLM's keys at top level, ``rope_scaling`` "mrope"), ``min_pixels`` /
  ``max_pixels`` in a ``Qwen2VLImageProcessor`` preprocessor config naming
  ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor``;
- ``Qwen/Qwen3-VL-8B-Instruct``: 4 shards, nested configs, ``Qwen2VLImageProcessorFast``
  (a torchvision class name, served by its PIL twin here), ``video_preprocessor_config.json``;
- ``LanguageBind/Video-LLaVA-7B-hf``: 3 shards, ``image_tower`` and ``video_tower`` CLIP
  weights, ``image_token_index`` / ``video_token_index``, one ``VideoLlavaImageProcessor``
  config for images and videos.

Not written: README.md, LICENSE, .gitattributes, and the LLaMA repositories' SentencePiece
``tokenizer.model`` (the tiny tokenizer is byte-level; transformers reads tokenizer.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from prunesid import PruneSID, load_vlm
from prunesid.video import load_video
from prunesid.vlm import wrap
from prunesid.family_kit import builtin_directory, builtin_models
from prunesid.family_kit.hub import HubLayout, write_checkpoint
from prunesid.families.llava.builtins import SEED, printable_only
from prunesid.families.qwen_vl.builtins import build_qwen_tokenizer
from tests.conftest import scene

CLIP = Path(__file__).resolve().parents[2] / "assets" / "clip.mp4"
QUESTION = "What is in the picture?"
LLAMA_TOKENIZER = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
QWEN_TOKENIZER = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"}
COMMON = {"config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json"}


def shards(count: int) -> set[str]:
    return {f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)} | {"model.safetensors.index.json"}


# The llava-interleave geometry with tiny widths: SigLIP at 384 px with 14 px patches
# (27 x 27 = 729 tokens, no CLS), feature layer -1, strategy "full", a Qwen2 LLM.
INTERLEAVE_LAYOUT = HubLayout(
    repo="llava-hf/llava-interleave-qwen-0.5b-hf", image_processor_type="SiglipImageProcessor", processor_class="LlavaProcessor",
    token_index_keys=True, processor_config=True,
    tokenizer_files=("special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt"),
)
INTERLEAVE_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llava_interleave():
    tokenizer = build_qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = SiglipVisionConfig(image_size=384, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=729,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    printable_only(model, tokenizer)
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": 384, "width": 384}), tokenizer=tokenizer, patch_size=14,
        vision_feature_select_strategy="full", num_additional_image_tokens=0, chat_template=INTERLEAVE_TEMPLATE,
    )
    return model, processor


# repository -> (the built-in written, None for the fixture above; the files written; takes video)
REPOSITORIES = {
    "llava-hf/llava-1.5-7b-hf": ("tiny-random", COMMON | LLAMA_TOKENIZER | shards(3) | {"processor_config.json"}, False),
    "llava-hf/llava-v1.6-mistral-7b-hf": ("tiny-random-next", COMMON | LLAMA_TOKENIZER | shards(4) | {"processor_config.json"}, False),
    "llava-hf/llava-interleave-qwen-0.5b-hf": (
        None, COMMON | LLAMA_TOKENIZER | QWEN_TOKENIZER | {"model.safetensors", "processor_config.json"}, False,
    ),
    "Qwen/Qwen2-VL-7B-Instruct": ("tiny-random-qwen2-vl", COMMON | QWEN_TOKENIZER | shards(5), False),
    "Qwen/Qwen2.5-VL-7B-Instruct": ("tiny-random-qwen2.5-vl", COMMON | QWEN_TOKENIZER | shards(5), False),
    "Qwen/Qwen3-VL-8B-Instruct": ("tiny-random-qwen3-vl", COMMON | QWEN_TOKENIZER | shards(4) | {"video_preprocessor_config.json"}, False),
    # main ships no chat template (the family supplies Video-LLaVA's format)
    "LanguageBind/Video-LLaVA-7B-hf": ("tiny-random-video-llava", (COMMON - {"chat_template.json"}) | LLAMA_TOKENIZER | shards(3), True),
}


def build(repo: str):
    builtin = REPOSITORIES[repo][0]
    if builtin is None:
        return (*build_tiny_llava_interleave(), INTERLEAVE_LAYOUT)
    return (*builtin_models()[builtin].build(), builtin_models()[builtin].layout)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """repository -> the directory written in its layout (once per module)."""
    written = {}

    def get(repo: str) -> Path:
        if repo not in written:
            model, processor, layout = build(repo)
            assert layout.repo == repo
            written[repo] = write_checkpoint(model, processor, tmp_path_factory.mktemp(repo.replace("/", "--")), layout)
        return written[repo]

    return get


def _config(directory: Path, name: str) -> dict:
    return json.loads((directory / name).read_text())


def _weight_names(directory: Path) -> list[str]:
    names = []
    for path in directory.glob("*.safetensors"):
        with safe_open(str(path), "pt") as weights:
            names += list(weights.keys())
    return names


@pytest.mark.parametrize("repo", REPOSITORIES)
def test_the_directory_holds_the_repositorys_files(checkpoints, repo):
    directory = checkpoints(repo)
    assert {path.name for path in directory.iterdir()} == REPOSITORIES[repo][1]
    preprocessor = _config(directory, "preprocessor_config.json")
    layout = build(repo)[2]
    assert (preprocessor["image_processor_type"], preprocessor["processor_class"]) == (layout.image_processor_type, layout.processor_class)
    if "chat_template.json" in REPOSITORIES[repo][1]:
        assert "chat_template" in _config(directory, "chat_template.json")


def test_config_keys_are_the_repositories(checkpoints):
    llava = _config(checkpoints("llava-hf/llava-1.5-7b-hf"), "config.json")
    assert "image_token_index" in llava and "image_token_id" not in llava
    video = _config(checkpoints("LanguageBind/Video-LLaVA-7B-hf"), "config.json")
    assert {"image_token_index", "video_token_index"} <= set(video)
    for repo in ("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"):
        flat = _config(checkpoints(repo), "config.json")
        assert "text_config" not in flat and flat["hidden_size"] == 64 and flat["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
        pixels = _config(checkpoints(repo), "preprocessor_config.json")
        assert (pixels["min_pixels"], pixels["max_pixels"], pixels["patch_size"], pixels["merge_size"]) == (56 * 56, 28 * 28 * 1280, 14, 2)
        assert "size" not in pixels
    qwen3 = checkpoints("Qwen/Qwen3-VL-8B-Instruct")
    assert "text_config" in _config(qwen3, "config.json")
    assert _config(qwen3, "video_preprocessor_config.json")["video_processor_type"] == "Qwen3VLVideoProcessor"
    assert _config(checkpoints("llava-hf/llava-interleave-qwen-0.5b-hf"), "processor_config.json")["vision_feature_select_strategy"] == "full"


def test_weight_names_are_the_repositories(checkpoints):
    llava = _weight_names(checkpoints("llava-hf/llava-1.5-7b-hf"))
    towers = [name for name in llava if name.startswith("vision_tower.")]
    assert towers and all(name.startswith("vision_tower.vision_model.") for name in towers)
    assert any(name.startswith("language_model.model.layers.") for name in llava)
    video = _weight_names(checkpoints("LanguageBind/Video-LLaVA-7B-hf"))
    assert any(name.startswith("video_tower.vision_model.") for name in video)
    assert any(name.startswith("image_tower.vision_model.") for name in video)
    qwen = _weight_names(checkpoints("Qwen/Qwen2.5-VL-7B-Instruct"))
    assert any(name.startswith("visual.blocks.") for name in qwen) and "model.embed_tokens.weight" in qwen
    index = _config(checkpoints("Qwen/Qwen2.5-VL-7B-Instruct"), "model.safetensors.index.json")
    assert sorted(set(index["weight_map"].values())) == sorted(shards(5) - {"model.safetensors.index.json"})


@pytest.mark.parametrize("repo", REPOSITORIES)
def test_a_directory_answers_as_the_model_in_memory(checkpoints, repo):
    """load_vlm(directory) with PruneSID at N = 64: the same weights, visual tokens, kept
    tokens and greedy text as the model the directory was written from."""
    model, processor, _ = build(repo)
    expected = wrap(model, processor, name=repo)
    loaded = load_vlm(str(checkpoints(repo)), device="cpu")
    assert type(loaded.model) is type(model)
    state, reference = loaded.model.state_dict(), model.state_dict()
    assert state.keys() == reference.keys() and all(torch.equal(state[name], reference[name]) for name in state)
    inputs = [scene(640, 480, seed=5)] + ([load_video(CLIP)] if REPOSITORIES[repo][2] else [])
    for media in inputs:
        got = loaded.chat(media, QUESTION, press=PruneSID(budget=64), max_new_tokens=6)
        want = expected.chat(media, QUESTION, press=PruneSID(budget=64), max_new_tokens=6)
        assert got.visual_tokens == want.visual_tokens
        assert [[view.tolist() for view in s.indices] for s in got.selections] == [[view.tolist() for view in s.indices] for s in want.selections]
        assert got.text == want.text


def test_a_video_model_directory_answers_about_a_clip_with_n_per_frame(checkpoints):
    vlm = load_vlm(str(checkpoints("LanguageBind/Video-LLaVA-7B-hf")), device="cpu")
    reply = vlm.chat(load_video(CLIP), "What happens?", press=PruneSID(budget=17), max_new_tokens=3)
    assert reply.visual_tokens == [8 * 17]


def test_processors_without_torchvision_have_no_video_slot(checkpoints):
    """Here (no torchvision) the Qwen and Video-LLaVA processors are their own classes minus
    the video processor; the LLaVA ones are transformers' own."""
    from prunesid.family_kit.processors import torchvision_available

    if torchvision_available():
        pytest.skip("torchvision is installed: the model's own processors are used (tests/vlm/test_checkpoints_torchvision.py)")
    names = {repo: type(load_vlm(str(checkpoints(repo)), device="cpu").processor).__name__ for repo in REPOSITORIES}
    assert names == {
        "llava-hf/llava-1.5-7b-hf": "LlavaProcessor",
        "llava-hf/llava-v1.6-mistral-7b-hf": "LlavaNextProcessor",
        "llava-hf/llava-interleave-qwen-0.5b-hf": "LlavaProcessor",
        "Qwen/Qwen2-VL-7B-Instruct": "Qwen2VLProcessorWithoutVideoProcessor",
        "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2_5_VLProcessorWithoutVideoProcessor",
        "Qwen/Qwen3-VL-8B-Instruct": "Qwen3VLProcessorWithoutVideoProcessor",
        "LanguageBind/Video-LLaVA-7B-hf": "VideoLlavaProcessorWithoutVideoProcessor",
    }


@pytest.mark.parametrize("name", list(builtin_models()))
def test_a_builtin_is_loaded_from_its_hub_layout_directory(name):
    """One loading path: load_vlm(built-in) reads the directory the built-in was written to."""
    directory = builtin_directory(name)
    assert builtin_directory(name) == directory  # written once
    vlm = load_vlm(name, device="cpu")
    assert vlm.name == name and Path(vlm.model.config._name_or_path) == directory
    assert (directory / "config.json").is_file()
    # Mini-Gemini's releases have no preprocessor config (tests/vlm/test_mini_gemini_release.py)
    assert (directory / "preprocessor_config.json").is_file() == (builtin_models()[name].layout.writer is None)


@pytest.mark.parametrize("module", ["internvl.builtins", "mini_gemini.checkpoint"])
def test_a_change_of_a_familys_builder_writes_a_new_directory(module, monkeypatch):
    """The directory's fingerprint covers every family's builtins.py and Mini-Gemini's format. Catches
    a fingerprint that misses them (as when the registry moved beside them and globbed its own folder):
    an edited builder would keep loading the stale directory."""
    import importlib

    from prunesid.family_kit import builtin_registry

    before = builtin_registry._fingerprint()
    edited = Path(importlib.import_module(f"prunesid.families.{module}").__file__)
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read_bytes(path) + (b"# edited" if path == edited else b""))
    assert builtin_registry._fingerprint() != before


def test_the_video_llava_processor_takes_clips_without_torchvision(checkpoints):
    """Video-LLaVA's processor, built without its torchvision video processor, still takes
    ``videos=``: each frame through the image processor (the checkpoint's settings), 8 x 257
    placeholders, and the unmodified model on its output answers as VLM.chat keeping every token."""
    import numpy as np

    vlm = load_vlm(str(checkpoints("LanguageBind/Video-LLaVA-7B-hf")), device="cpu")
    clip = load_video(CLIP)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = vlm.processor(text=text, videos=np.stack([np.asarray(frame) for frame in clip.frames]), return_tensors="pt")
    assert int((inputs["input_ids"] == vlm.model.config.video_token_id).sum()) == 8 * 257
    assert torch.equal(inputs["pixel_values_videos"], vlm.family.preprocess_video(list(clip.frames))["pixel_values_videos"])
    generated = vlm.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    unmodified = vlm.processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    keep_all = PruneSID(budget=4096, keep_cls=True, order="spatial")
    assert vlm.chat(clip, "What happens?", press=keep_all, max_new_tokens=5).text == unmodified


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-video-llava"])
def test_a_directory_saved_by_transformers_loads(tmp_path, name):
    """What a user's own save_pretrained writes (transformers 5: the image processor inside
    processor_config.json, chat_template.jinja) loads too, under the model's own processor class."""
    vlm = load_vlm(name, device="cpu")
    vlm.model.save_pretrained(tmp_path)
    vlm.processor.save_pretrained(tmp_path)
    assert not (tmp_path / "preprocessor_config.json").exists()
    assert json.loads((tmp_path / "processor_config.json").read_text())["processor_class"] == builtin_models()[name].layout.processor_class
    loaded = load_vlm(str(tmp_path), device="cpu")
    image = scene(400, 300, seed=1)
    got = loaded.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    want = vlm.chat(image, QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    assert (got.visual_tokens, got.text) == (want.visual_tokens, want.text)
