"""Mini-Gemini directories laid out as the YanweiLi/MGM-* repositories publish them, file for file:
config.json with the released tower paths (``model_zoo/OpenAI/...``), sharded weights (safetensors,
or PyTorch ``.bin`` as the first releases), the CLIP tower under ``vision_model.`` (transformers
4.3x's names) or flat (newer exports), SentencePiece's ``tokenizer.model`` with no tokenizer.json,
and no preprocessor, generation or chat-template file. Where the shards lack the towers, they come
from two directories laid out as the towers' own repositories: ``openai/clip-vit-large-patch14-336``
(transformers' CLIP format, text tower included) and the open_clip ConvNeXt-L/320 checkpoint
(``open_clip_config.json`` + ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``).
Each must load to the built-in it was written from: the same weights, the same tokens before the
projector, the same logits."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunesid.vlm import load_vlm
from prunesid.family_kit import builtin_directory
from prunesid.families.mini_gemini.adapter import CHAT_TEMPLATES, conversation_mode
from prunesid.families.mini_gemini.checkpoint import original_name, save_original
from prunesid.families.mini_gemini.towers import AUX_PREFIX, CLIP_PREFIX, ENV
from tests.conftest import scene

BUILTIN = "tiny-random-mgm"
QUESTION = "What is in the picture?"
RELEASED_FILES = {
    "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
    "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json",
}
CLIP_DIR = "clip-vit-large-patch14-336"
CONVNEXT_DIR = "openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup"


@functools.lru_cache(maxsize=None)
def _builtin(name: str = BUILTIN):
    return load_vlm(str(builtin_directory(name)), device="cpu")


def _assert_same_model(directory: Path, name: str = BUILTIN) -> None:
    """Weights, the tokens before the projector and the logits equal the built-in's."""
    reference, loaded = _builtin(name), load_vlm(str(directory), device="cpu")
    expected_weights = reference.model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, expected_weights[name]), name
    image = scene(640, 480, seed=3)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode(image).features, reference.encode(image).features, rtol=0, atol=0)
        prepared = loaded.prepare(image, QUESTION, None)
        assert torch.equal(prepared.input_ids, reference.prepare(image, QUESTION, None).input_ids)
        pixels = loaded.family.preprocess(image)
        logits = loaded.model(input_ids=prepared.input_ids, **pixels).logits
        torch.testing.assert_close(logits, reference.model(input_ids=prepared.input_ids, **pixels).logits, rtol=0, atol=0)


def _release(tmp_path: Path, name: str = BUILTIN, **options) -> Path:
    """The built-in written again by save_original (``options``: shards, weight_format, towers)."""
    vlm = _builtin(name)
    return save_original(vlm.model, tmp_path / "MGM-7B", vlm.processor, **options)


def _clip_repository(root: Path, weight_file: str = "pytorch_model.bin", name: str = BUILTIN) -> Path:
    """openai/clip-vit-large-patch14-336's layout: a whole CLIP checkpoint (vision and text
    towers, projections) in transformers' names, its config and preprocessor config."""
    model = _builtin(name).model
    directory = root / CLIP_DIR
    directory.mkdir(parents=True)
    tensors = {"vision_model." + name: tensor.clone() for name, tensor in model.vision_tower.state_dict().items()}
    tensors.update({
        "text_model.embeddings.token_embedding.weight": torch.randn(49408 // 64, 8), "text_model.final_layer_norm.weight": torch.ones(8),
        "visual_projection.weight": torch.randn(8, 64), "text_projection.weight": torch.randn(8, 8), "logit_scale": torch.tensor(4.6),
    })
    if weight_file.endswith(".bin"):
        torch.save(tensors, directory / weight_file)
    else:
        save_file(tensors, str(directory / weight_file), metadata={"format": "pt"})
    vision = dict(model.config.vision)
    (directory / "config.json").write_text(json.dumps({"model_type": "clip", "architectures": ["CLIPModel"], "vision_config": vision, "text_config": {}}))
    (directory / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "CLIPImageProcessor", "crop_size": 336}))
    return directory


def _convnext_repository(root: Path, weight_file: str = "open_clip_pytorch_model.bin", name: str = BUILTIN) -> Path:
    """The open_clip ConvNeXt-L/320 checkpoint's layout: the whole CLIP model in open_clip's
    names (the timm trunk under visual.trunk., its head, the projection head, the text tower)."""
    model = _builtin(name).model
    directory = root / CONVNEXT_DIR
    directory.mkdir(parents=True)
    tensors = {
        "visual.trunk." + original_name("aux_tower." + name)[len(AUX_PREFIX + "vision_"):]: tensor.clone()
        for name, tensor in model.aux_tower.state_dict().items()
    }
    tensors.update({
        "visual.trunk.head.norm.weight": torch.ones(32), "visual.head.mlp.fc1.weight": torch.randn(16, 32),
        "text.token_embedding.weight": torch.randn(16, 8), "logit_scale": torch.tensor(4.6),
    })
    if weight_file.endswith(".bin"):
        torch.save(tensors, directory / weight_file)
    else:
        save_file(tensors, str(directory / weight_file), metadata={"format": "pt"})
    config = {
        "model_cfg": {"embed_dim": 768, "vision_cfg": {"timm_model_name": "convnext_large", "timm_pool": "", "timm_proj": "mlp", "image_size": 320}},
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    return directory


# --- the released layout, towers in the shards ---


def test_the_builtin_is_written_as_the_release():
    """Catches a built-in written in the project's own layout instead of the release's (flat CLIP
    names, generation / preprocessor / chat-template files, tokenizer.json): then the built-ins
    no longer walk the path a real download takes."""
    directory = builtin_directory(BUILTIN)
    assert {path.name for path in directory.iterdir()} == RELEASED_FILES
    names = set(json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"])
    assert "model.vision_tower.vision_tower.vision_model.embeddings.class_embedding" in names
    assert not any(name.startswith(CLIP_PREFIX + "embeddings.") for name in names)
    assert "model.vision_tower_aux.vision_stages.1.blocks.0.mlp.fc1.weight" in names and "lm_head.weight" in names
    config = json.loads((directory / "config.json").read_text())
    assert config["mm_vision_tower"] == "model_zoo/OpenAI/" + CLIP_DIR and config["mm_vision_tower_aux"] == "model_zoo/OpenAI/" + CONVNEXT_DIR
    # the LLM's keys as transformers 4.36 wrote them (transformers 5 reads them through its legacy path)
    assert config["rope_theta"] == 10000.0 and config["rope_scaling"] is None and "rope_parameters" not in config
    assert json.loads((directory / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizer"


@pytest.mark.parametrize("weight_format", ["safetensors", "bin"])
def test_released_layout_with_towers_in_the_shards_equals_the_builtin(tmp_path, weight_format):
    """Catches a loader that reads only safetensors (MGM's first releases are .bin shards) or maps
    the CLIP tower's vision_model. names wrongly."""
    directory = _release(tmp_path, weight_format=weight_format)
    stem = "model" if weight_format == "safetensors" else "pytorch_model"
    assert (directory / f"{stem}-00002-of-00002.{weight_format}").is_file() and (directory / f"{stem}.{weight_format}.index.json").is_file()
    _assert_same_model(directory)


def test_flat_clip_names_of_newer_exports_load_too(tmp_path):
    """Catches dropping the flat mapping (transformers 5's CLIPVisionModel names, without vision_model.)."""
    directory = _release(tmp_path, shards=1)
    tensors = load_file(str(directory / "model.safetensors"))
    flat = {name.replace(CLIP_PREFIX + "vision_model.", CLIP_PREFIX): tensor for name, tensor in tensors.items()}
    assert flat.keys() != tensors.keys()
    save_file(flat, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _assert_same_model(directory)


# --- towers from their own repositories ---


@pytest.mark.parametrize("weights", [("pytorch_model.bin", "open_clip_pytorch_model.bin"), ("model.safetensors", "open_clip_model.safetensors")])
def test_towers_missing_from_the_shards_come_from_their_repositories(tmp_path, monkeypatch, weights):
    """Catches a loader that needs the towers inside the shards, misreads open_clip's trunk names
    (visual.trunk.*) or lets the CLIP repository's text tower into the model."""
    directory = _release(tmp_path, towers=False)
    names = set(json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"])
    assert not any(name.startswith((CLIP_PREFIX, AUX_PREFIX)) for name in names)
    towers = tmp_path / "towers"
    _clip_repository(towers, weights[0])
    _convnext_repository(towers, weights[1])
    monkeypatch.setenv(ENV, str(towers))
    _assert_same_model(directory)


@pytest.mark.slow  # the HD built-in: a 1536 px aux map, five views
def test_the_hd_release_without_towers_equals_its_builtin(tmp_path, monkeypatch):
    """MGM-7B-HD's layout (model_type mgm, 5 views, a 1536 px aux map), towers from their repositories."""
    name = "tiny-random-mgm-hd"
    directory = _release(tmp_path, name, towers=False)
    _clip_repository(tmp_path / "towers", name=name)
    _convnext_repository(tmp_path / "towers", "open_clip_model.safetensors", name=name)
    monkeypatch.setenv(ENV, str(tmp_path / "towers"))
    _assert_same_model(directory, name)


def test_towers_at_the_released_model_zoo_paths(tmp_path, monkeypatch):
    """MGM's own convention: ``model_zoo/OpenAI/...`` relative to the working directory."""
    directory = _release(tmp_path, towers=False)
    zoo = tmp_path / "work" / "model_zoo" / "OpenAI"
    _clip_repository(zoo)
    _convnext_repository(zoo)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path / "work")
    _assert_same_model(directory)


# --- one line naming each missing piece ---


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 800, message
    return message


def test_a_missing_tower_is_named(tmp_path, monkeypatch):
    """Catches a KeyError / a list of every missing tensor instead of naming the tower and where to put it."""
    directory = _release(tmp_path, towers=False)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as error:
        load_vlm(str(directory), device="cpu")
    message = _one_line(error)
    assert "no CLIP tower (mm_vision_tower 'model_zoo/OpenAI/clip-vit-large-patch14-336')" in message
    assert "openai/clip-vit-large-patch14-336" in message and ENV in message
    _clip_repository(tmp_path / "towers")
    monkeypatch.setenv(ENV, str(tmp_path / "towers"))
    with pytest.raises(ValueError) as error:
        load_vlm(str(directory), device="cpu")
    assert "no ConvNeXt tower (mm_vision_tower_aux" in _one_line(error)
    assert "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup" in str(error.value)


def test_a_tower_weight_of_the_wrong_shape_is_named(tmp_path, monkeypatch):
    directory = _release(tmp_path, towers=False)
    towers = tmp_path / "towers"
    clip = _clip_repository(towers)
    _convnext_repository(towers)
    tensors = torch.load(clip / "pytorch_model.bin", weights_only=True)
    tensors["vision_model.post_layernorm.weight"] = torch.ones(3)
    torch.save(tensors, clip / "pytorch_model.bin")
    monkeypatch.setenv(ENV, str(towers))
    with pytest.raises(ValueError) as error:
        load_vlm(str(directory), device="cpu")
    assert "wrong shapes: model.vision_tower.vision_tower.vision_model.post_layernorm.weight is (3,), the model needs (64,)" in _one_line(error)


def test_many_unknown_weights_fit_one_line(tmp_path):
    """What a loader that mapped vision_model. wrongly said of a release: every name, on and on."""
    directory = _release(tmp_path, shards=1)
    tensors = load_file(str(directory / "model.safetensors"))
    tensors = {name.replace("vision_model.", "vision_modle."): tensor for name, tensor in tensors.items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError) as error:
        load_vlm(str(directory), device="cpu")
    message = _one_line(error)
    assert "unknown weights (no place in the model): model.vision_tower.vision_tower.vision_modle." in message and " more" in message


def test_a_missing_tokenizer_library_is_named(tmp_path, monkeypatch):
    """Catches transformers' fall-through to tiktoken ("`tiktoken` is required ...") when
    sentencepiece is absent: the release's tokenizer is tokenizer.model only."""
    import transformers.utils

    directory = _release(tmp_path)
    monkeypatch.setattr(transformers.utils, "is_sentencepiece_available", lambda: False)
    with pytest.raises(ValueError) as error:
        load_vlm(str(directory), device="cpu")
    message = _one_line(error)
    assert "this checkpoint's tokenizer is SentencePiece's tokenizer.model: install sentencepiece" in message
    assert "tiktoken" not in message


# --- the prompt: MGM's conversation templates ---


def _mgm_prompt(mode: str, turns: list[tuple[str, str | None]]) -> str:
    """An independent transcription of MGM's Conversation.get_prompt for the modes its cli.py
    and eval scripts use; ``turns``: (user, assistant or None)."""
    messages = [message for user, answer in turns for message in (user, answer)]
    if mode == "vicuna_v1":
        out = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. "
        for i, message in enumerate(messages):
            role = ("USER", "ASSISTANT")[i % 2]
            out += f"{role}: {message}{(' ', '</s>')[i % 2]}" if message else f"{role}:"
        return out
    if mode == "mistral_instruct":
        out = ""
        for i, message in enumerate(messages):
            if message:
                out += "<s>" + f"[INST] {message} [/INST]" if i % 2 == 0 else " " + message + " </s>"
        return out[3:] if out.startswith("<s>") else out
    if mode == "gemma":
        out = ""
        for i, message in enumerate(messages):
            role = ("user", "model")[i % 2]
            out += f"<start_of_turn>{role}\n{message}<end_of_turn>\n{('', '<eos>')[i % 2]}" if message else f"<start_of_turn>{role}\n"
        return out
    if mode == "chatml_direct":
        out = "<|im_start|>system\nAnswer the questions.<|im_end|>"
        for i, message in enumerate(messages):
            role = ("<|im_start|>user\n", "<|im_start|>assistant\n")[i % 2]
            out += role + message + "<|im_end|>" if message else role
        return out
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    out = header.format("system") + ("You are a helpful language and vision assistant. You are able to understand the visual content "
                                     "that the user provides, and assist the user with a variety of tasks using natural language.<|eot_id|>")
    for i, message in enumerate(messages):
        role = header.format(("user", "system")[i % 2])
        out += role + message + "<|eot_id|>" if message else role
    return out


@pytest.mark.parametrize("mode", ["vicuna_v1", "mistral_instruct", "gemma", "chatml_direct", "llama_3"])
@pytest.mark.parametrize("images", [1, 2])
def test_prompts_follow_mgm_conversation_templates(mode, images):
    """Catches each template drifting from MGM's (the Vicuna system line says "user", not
    "human"; Mistral's later turns start with <s>; Gemma's model turn ends with <eos>) and
    the "Image i:" labels cli.py puts before each of two or more images."""
    from jinja2 import Environment

    def user(text, count):
        return {"role": "user", "content": [{"type": "image"}] * count + [{"type": "text", "text": text}]}

    messages = [user("Describe it.", images), {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}, user("And the colour?", 0)]
    rendered = Environment().from_string(CHAT_TEMPLATES[mode]).render(messages=messages, add_generation_prompt=True)
    first = "".join(f"Image {i + 1}:<image>\n" if images >= 2 else "<image>\n" for i in range(images)) + "Describe it."
    assert rendered == _mgm_prompt(mode, [(first, "A cat."), ("And the colour?", None)])


def test_each_llm_gets_its_conversation_mode():
    assert conversation_mode("llama", {"<s>": 1}) == "vicuna_v1"
    assert conversation_mode("llama", {"<|eot_id|>": 128009}) == "llama_3"  # MGM-8B
    assert conversation_mode("llama", {"<|im_start|>": 6}) == "chatml_direct"  # MGM-34B (Nous-Hermes-2-Yi)
    assert conversation_mode("gemma", {}) == "gemma" and conversation_mode("mixtral", {}) == "mistral_instruct"


def test_the_prompt_is_tokenised_chunk_by_chunk_as_mgm_does():
    """MGM's tokenizer_image_token: each chunk around <image> tokenised on its own, so with a
    SentencePiece tokenizer the image is followed by the dummy prefix "▁" and then the newline
    (a tokenizer run over the whole prompt drops that "▁")."""
    vlm = _builtin()
    tokenizer = vlm.processor.tokenizer
    ids = tokenizer("USER: <image>\nHi ASSISTANT:")["input_ids"]
    image = ids.index(vlm.model.config.image_token_id)
    assert tokenizer.convert_ids_to_tokens(ids[image + 1:image + 3]) == ["\u2581", "\n"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


# --- the fronts ---


@pytest.mark.slow
def test_cli_and_demo_take_a_release_without_towers(tmp_path, monkeypatch, capsys):
    """``prunesid chat`` and ``python app.py --model DIRECTORY`` load the released layout, towers
    from ``$PRUNESID_MGM_TOWERS``, and feed what load_vlm(DIRECTORY) feeds."""
    from gradio_client import Client, handle_file

    from prunesid import PruneSID
    from prunesid.cli import main
    from tests.conftest import app_env, launched_app

    directory = _release(tmp_path, towers=False)
    towers = tmp_path / "towers"
    _clip_repository(towers)
    _convnext_repository(towers)
    monkeypatch.setenv(ENV, str(towers))
    picture = tmp_path / "scene.png"
    scene(520, 390, seed=9).save(picture)
    expected = load_vlm(str(directory), device="cpu").chat(scene(520, 390, seed=9), QUESTION, press=PruneSID(budget=64), max_new_tokens=4)
    assert main(["chat", str(picture), QUESTION, "--model", str(directory), "--budget", "64", "--max-new-tokens", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["visual_tokens"] == expected.visual_tokens == [64] and report["answer"] == expected.text
    log_path = tmp_path / "app.log"
    with launched_app("--model", str(directory), "--max-new-tokens", "4", log_path=log_path, env={**app_env(), ENV: str(towers)}) as (url, _):
        stats = Client(url, verbose=False).predict(
            image=handle_file(str(picture)), budget=64, groups=0, lam=0, grouping="psca", dynamic=False, api_name="/analyze"
        )[-2]
    text = log_path.read_text()
    assert f"Loading {directory} on cpu" in text and "falling back" not in text
    assert [stats["visual_tokens"]] == expected.visual_tokens


def _cached_repository(cache: Path, repo: str) -> Path:
    """An empty snapshot of ``repo`` in a Hugging Face cache laid out as huggingface_hub keeps it."""
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_towers_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """The last place looked: the towers' Hub repositories (openai/clip-vit-large-patch14-336,
    laion/CLIP-convnext_large_d_320...), here from the cache, offline. Catches a loader that maps
    the released model_zoo paths to no repository, or to the wrong one."""
    import huggingface_hub.constants

    directory = _release(tmp_path, towers=False)
    cache = tmp_path / "hub"
    for repo, write in (("openai/clip-vit-large-patch14-336", _clip_repository), ("laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup", _convnext_repository)):
        snapshot = _cached_repository(cache, repo)
        written = write(tmp_path / "scratch" / repo.replace("/", "--"))
        for path in written.iterdir():
            shutil.copy(path, snapshot / path.name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    _assert_same_model(directory)


def test_a_mixtral_release_loads_its_per_expert_weights(tmp_path):
    """MGM-8x7B's layout: the Mixtral LLM as transformers 4.36 saved it (block_sparse_moe.gate,
    experts.{e}.w1/w2/w3 one by one), which transformers 5 keeps fused. Catches a loader that
    maps only transformers 5's names (every expert weight then unknown) or fuses w1 / w3 in the
    wrong order (the weights then differ); the prompt is MGM's mistral_instruct."""
    from prunesid.families.mini_gemini.checkpoint import MiniGeminiConfig, build_model

    reference = _builtin()
    raw = {**reference.model.config.raw, "model_type": "mgm_mixtral", "architectures": ["MGMMixtralForCausalLM"],
           "num_local_experts": 3, "num_experts_per_tok": 2, "intermediate_size": 40}
    torch.manual_seed(7)
    model = build_model(MiniGeminiConfig(raw)).eval()
    directory = save_original(model, tmp_path / "MGM-8x7B", reference.processor)
    names = set(json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"])
    assert {"model.layers.1.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.experts.2.w3.weight"} <= names
    assert not any(".mlp.experts." in name for name in names)
    loaded = load_vlm(str(directory), device="cpu")
    expected = model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    text = loaded.processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}])
    assert text == "[INST] <image>\nHi? [/INST]"


def test_a_gemma_release_loads_with_its_tied_head_and_template(tmp_path):
    """MGM-2B's layout (``mini_gemini_gemma``): a Gemma LLM whose output head is the embedding
    (no lm_head.weight in the shards), MGM's gemma template, image rows scaled as trained."""
    from prunesid.families.mini_gemini.checkpoint import MiniGeminiConfig, build_model

    reference = _builtin()
    raw = {key: value for key, value in reference.model.config.raw.items() if key not in ("rope_theta", "rope_scaling")}
    raw.update(model_type="mini_gemini_gemma", architectures=["MiniGeminiGemmaForCausalLM"], head_dim=16, tie_word_embeddings=True)
    torch.manual_seed(7)
    model = build_model(MiniGeminiConfig(raw)).eval()
    directory = save_original(model, tmp_path / "MGM-2B", reference.processor)
    names = set(json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"])
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    loaded = load_vlm(str(directory), device="cpu")
    expected = model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert loaded.model.config.scale_image_features and type(loaded.model.language_model).__name__ == "GemmaForCausalLM"
    text = loaded.processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}])
    assert text == "<start_of_turn>user\n<image>\nHi?<end_of_turn>\n<start_of_turn>model\n"
