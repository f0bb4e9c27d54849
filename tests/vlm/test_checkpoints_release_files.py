"""The built-ins' directories hold what the repositories they name publish, where those differ
from what transformers 5's save_pretrained writes: Qwen3-VL-MoE's experts in the release's
layout (``gate_up_proj [E, hidden, 2I]``, ``down_proj [E, I, hidden]``, transposed against
transformers' modules), Qwen3.5's ``chat_template.jinja`` and its multi-token-prediction
weights ``mtp.*``, LLaVA-OneVision's video processor settings in ``video_processor/``,
InternVL3-hf's ``processor_config.json`` and ``chat_template.jinja``. Loading each directory
gives the model it was written from, weight for weight, so the built-ins walk the code a real
download walks (transformers' transpose on load, its skipping of ``mtp.*``, the template read
from the .jinja file, the video settings read from the sub-folder)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from prunesid import PruneSID, load_vlm
from prunesid.cli import main
from prunesid.family_kit import builtin_directory, builtin_models
from tests.conftest import scene

QUESTION = "What is in the picture?"
QWEN_TOKENIZER = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"}
LLAMA_TOKENIZER = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
# Each repository's files besides its weights (and README.md, .gitattributes, pictures, onnx/), as its
# Hub listing shows them on main.
RELEASE_FILES = {
    # llava-hf/llava-onevision-qwen2-0.5b-ov-hf (and -7b-ov-hf, -72b-ov-hf): the video processor's
    # settings in video_processor/preprocessor_config.json, no root video_preprocessor_config.json
    "tiny-random-llava-onevision": {
        "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json", "chat_template.json",
        "video_processor/preprocessor_config.json", *QWEN_TOKENIZER,
    },
    # Qwen/Qwen3-VL-2B-Instruct (the listing seen of the Qwen3-VL-8B-Instruct generation): the
    # tokenizer as vocab.json, merges.txt, tokenizer.json and tokenizer_config.json only
    "tiny-random-qwen3-vl": {
        "config.json", "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json", "chat_template.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # OpenGVLab/InternVL3-{1,2,8,14}B-hf after their "Update processor" revision: processor_config.json
    # ({"image_seq_length": 256, "processor_class": "InternVLProcessor"}), chat_template.jinja
    "tiny-random-internvl": {
        "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json", "chat_template.jinja",
        "video_preprocessor_config.json", *QWEN_TOKENIZER,
    },
    # Qwen/Qwen2-VL-7B-Instruct: the Hub's tree pages at a7a06a1 ("Update README.md", 16 commits) and
    # refs/pr/9, plus its vocab.json blob page: LICENSE, chat_template.json, config.json,
    # generation_config.json, merges.txt, 5 shards + index, preprocessor_config.json, tokenizer.json,
    # tokenizer_config.json, vocab.json; no video preprocessor file
    "tiny-random-qwen2-vl": {
        "config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # llava-hf/llava-1.5-7b-hf: the Hub's tree page at 95f2cf3 ("Typo (#30)", 35 commits): added_tokens.json,
    # chat_template.json, config.json, generation_config.json, 3 shards + index, preprocessor_config.json,
    # special_tokens_map.json, tokenizer.json, tokenizer.model, tokenizer_config.json; no processor_config.json
    "tiny-random": {
        "config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json", *LLAMA_TOKENIZER,
    },
    # LanguageBind/Video-LLaVA-7B-hf: the Hub's tree pages of main and 4cf9d8c ("Update README.md", 5
    # commits): added_tokens.json, config.json, generation_config.json, 3 shards + index,
    # preprocessor_config.json, special_tokens_map.json, tokenizer.json, tokenizer.model, tokenizer_config.json.
    # Its chat_template.json exists only at f8707c1 ("Add chat template support", a sixth commit not on main).
    "tiny-random-video-llava": {"config.json", "generation_config.json", "preprocessor_config.json", *LLAMA_TOKENIZER},
}
# Where a built-in's files differ from its release: (the release's files it lacks, files it writes that the
# release lacks). tokenizer.model: the byte-level tiny tokenizer has no SentencePiece model, and transformers
# reads tokenizer.json first. processor_config.json: LLaVA-1.5 loads the same without it (the copy below
# drops it).
DIFFERENCES = {
    "tiny-random": ({"tokenizer.model"}, {"processor_config.json"}),
    "tiny-random-video-llava": ({"tokenizer.model"}, set()),
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
KEEP_ALL = PruneSID(budget=4096, keep_cls=False, order="spatial")  # keeps every token of one view


def _stored_shapes(directory, suffix: str) -> dict[str, list[int]]:
    shapes = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            shapes.update({name: weights.get_slice(name).get_shape() for name in weights.keys() if name.endswith(suffix)})
    return shapes


def _assert_loads_to_the_built_model(name: str, directory=None) -> None:
    loaded = load_vlm(str(directory or builtin_directory(name)), device="cpu").model.state_dict()
    built, _ = builtin_models()[name].build()
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


def _non_weight_files(directory) -> set[str]:
    files = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}
    return {name for name in files if not (name in WEIGHT_FILES or (name.startswith("model-") and name.endswith(".safetensors")))}


def _cli_compress(picture, model: str, capsys) -> dict:
    assert main(["compress", str(picture), "--model", model, "--budget", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    return {"tokens": report["tokens"], "visual_tokens": report["visual_tokens"], "kept": [view["kept"] for view in report["views"]]}


def _release_copy(name: str, tmp_path):
    """The built-in's directory under the repository's name, holding the release's file set: the files
    the built-in writes and the release lacks are dropped, but for those the loader needs."""
    release = tmp_path / builtin_models()[name].layout.repo.split("/")[-1]
    shutil.copytree(builtin_directory(name), release)
    missing, extra = DIFFERENCES.get(name, (set(), set()))
    for file in extra:
        (release / file).unlink()
    return release


@pytest.mark.parametrize("name", sorted(RELEASE_FILES))
def test_a_directory_with_the_release_files_loads_as_the_built_in(name, tmp_path, capsys):
    """Catches a built-in whose files differ from its repository's other than as DIFFERENCES says (a
    root video_preprocessor_config.json where OneVision publishes video_processor/, InternVL3-hf's
    processor_config.json or .jinja template missing, a file added to or dropped from a layout) and a
    loader that needs the project's own layout: the release's file set under the repository's name
    loads through load_vlm and the CLI with the built-in's weights, fed counts and kept tokens."""
    missing, extra = DIFFERENCES.get(name, (set(), set()))
    assert missing <= RELEASE_FILES[name] and not extra & RELEASE_FILES[name]
    assert _non_weight_files(builtin_directory(name)) == (RELEASE_FILES[name] - missing) | extra
    release = _release_copy(name, tmp_path)
    assert _non_weight_files(release) == RELEASE_FILES[name] - missing
    _assert_loads_to_the_built_model(name, release)
    loaded, builtin = load_vlm(str(release), device="cpu"), load_vlm(name, device="cpu")
    picture = tmp_path / "scene.png"
    scene(500, 400, seed=11).save(picture)
    press = PruneSID(budget=32)
    ours, theirs = (vlm.chat(scene(500, 400, seed=11), QUESTION, press=press, max_new_tokens=3) for vlm in (loaded, builtin))
    assert ours.visual_tokens == theirs.visual_tokens and sum(ours.visual_tokens) > 0 and ours.text == theirs.text
    from_release, from_builtin = _cli_compress(picture, str(release), capsys), _cli_compress(picture, name, capsys)
    assert from_release == from_builtin and from_release["visual_tokens"] == sum(ours.visual_tokens)


@pytest.mark.parametrize("name", sorted(RELEASE_FILES))
def test_the_demos_model_option_serves_the_release_directory(name, tmp_path, monkeypatch):
    """`python app.py --model DIRECTORY` loads through choose_model and load_with_fallback (app.main),
    without launching the app. Catches a demo that falls back to the offline model (a directory it
    cannot load), serves the built-in or another model instead of the directory, or loads other
    weights: it answers as load_vlm(DIRECTORY), feeds the built-in's count under a press, and
    keeping every token answers as the unmodified model."""
    from demo.model_choice import choose_model, load_with_fallback

    monkeypatch.delenv("PRUNESID_MODEL", raising=False)
    release = _release_copy(name, tmp_path)
    served, banner = load_with_fallback(choose_model(str(release)))
    assert served.name == str(release) and "could not be loaded" not in banner
    built, _ = builtin_models()[name].build()
    expected = built.state_dict()
    assert {key: tensor.shape for key, tensor in served.model.state_dict().items()} == {key: tensor.shape for key, tensor in expected.items()}
    assert all(torch.equal(tensor, expected[key]) for key, tensor in served.model.state_dict().items())
    image, press = scene(500, 400, seed=11), PruneSID(budget=32)
    demo, direct, builtin = (vlm.chat(image, QUESTION, press=press, max_new_tokens=3) for vlm in (served, load_vlm(str(release)), load_vlm(name)))
    assert demo.visual_tokens == builtin.visual_tokens == direct.visual_tokens and sum(demo.visual_tokens) > 0
    assert demo.text == direct.text
    unmodified, kept = (served.chat(image, QUESTION, press=choice, max_new_tokens=3) for choice in (None, KEEP_ALL))
    assert kept.visual_tokens == unmodified.visual_tokens and kept.text == unmodified.text


def test_video_llava_release_without_a_chat_template_answers(tmp_path):
    """The release's exact file set (main has no chat_template.json): the Video-LLaVA family
    supplies its conversation format. Catches the family's template dropped ("this processor
    does not have a chat template") or written over a checkpoint's own."""
    release = _release_copy("tiny-random-video-llava", tmp_path)
    assert not (release / "chat_template.json").exists()
    vlm = load_vlm(str(release), device="cpu")
    prompt = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True,
    )
    assert prompt == f"USER: <image>\n{QUESTION} ASSISTANT:"
    assert vlm.chat(scene(300, 200, seed=3), QUESTION, press=PruneSID(budget=16), max_new_tokens=2).visual_tokens == [16]
    (release / "chat_template.jinja").write_text("{{ 'own template' }}")
    assert load_vlm(str(release), device="cpu").processor.chat_template == "{{ 'own template' }}"


def test_internvl_processor_config_is_the_releases():
    """Catches processor_config.json written with other keys than InternVL3-hf's."""
    directory = builtin_directory("tiny-random-internvl")
    assert json.loads((directory / "processor_config.json").read_text()) == {"image_seq_length": 256, "processor_class": "InternVLProcessor"}
    assert load_vlm(str(directory), device="cpu").processor.chat_template == (directory / "chat_template.jinja").read_text()


def test_onevision_video_settings_are_read_from_the_releases_sub_folder(tmp_path):
    """Catches a loader that reads only a root video_preprocessor_config.json: the release keeps
    the video settings in video_processor/preprocessor_config.json (image_processor_type
    LlavaOnevisionVideoProcessor); changed there, the clips' frame size and mean follow."""
    directory = builtin_directory("tiny-random-llava-onevision")
    video = json.loads((directory / "video_processor" / "preprocessor_config.json").read_text())
    assert video["image_processor_type"] == "LlavaOnevisionVideoProcessor" and video["size"] == {"height": 384, "width": 384}
    assert not (directory / "video_preprocessor_config.json").exists()
    assert load_vlm(str(directory), device="cpu").processor.video_processor.size == video["size"]
    release = tmp_path / "llava-onevision-qwen2-0.5b-ov-hf"
    shutil.copytree(directory, release)
    video.update(size={"height": 196, "width": 196}, image_mean=[0.25, 0.25, 0.25])
    (release / "video_processor" / "preprocessor_config.json").write_text(json.dumps(video))
    processor = load_vlm(str(release), device="cpu").processor.video_processor
    assert processor.size == {"height": 196, "width": 196} and processor.image_mean == [0.25, 0.25, 0.25]
