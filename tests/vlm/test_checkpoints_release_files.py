"""The built-ins' directories hold what the repositories they name publish, where those differ
from what transformers 5's save_pretrained writes: LLaVA-OneVision's video processor settings in
``video_processor/``, InternVL3-hf's ``processor_config.json`` and ``chat_template.jinja``,
Qwen3.5's ``chat_template.jinja``, each release's exact file set (the weights' names, shards and
layouts: test_checkpoints_release_weights.py). Loading each directory gives the model it was
written from, weight for weight, so the built-ins walk the code a real download walks (the
template read from the .jinja file, the video settings read from the sub-folder or, where a
release has no video file, from preprocessor_config.json)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from prunesid import PruneSID, load_vlm
from prunesid.cli import main
from prunesid.family_kit import builtin_directory, builtin_models
from prunesid.video import Video
from prunesid.vlm import wrap
from tests.conftest import scene

QUESTION = "What is in the picture?"
QWEN_TOKENIZER = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"}
LLAMA_TOKENIZER = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
# Each repository's files besides its weights (and README.md, LICENSE, .gitattributes, pictures, onnx/), as its
# Hub listing shows them on main or at the revision named.
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
    # ({"image_seq_length": 256, "processor_class": "InternVLProcessor"}, 72 bytes in the download log of
    # hiyouga/LlamaFactory issue #7897), chat_template.jinja. video_preprocessor_config.json: see UNCONFIRMED.
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
    # Qwen/Qwen2.5-VL-7B-Instruct @ cc594898137f460bfe9f0759e9844b3ce807cfb5: the 16-file manifest with sizes
    # and LFS-matched shard hashes in github.com/yuzastudio6-cyber/Reedkt,
    # docs/qwen2-5-vl-7b-controlled-private-download-manifest.md (.gitattributes, README.md, chat_template.json,
    # config.json, generation_config.json, merges.txt, 5 shards + index, preprocessor_config.json,
    # tokenizer.json, tokenizer_config.json, vocab.json); no video_preprocessor_config.json,
    # processor_config.json, special_tokens_map.json or added_tokens.json
    "tiny-random-qwen2.5-vl": {
        "config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # Qwen/Qwen3-VL-30B-A3B-Instruct @ 9c4b90e1e4ba969fd3b5378b57d966d725f1b86c, medium confidence: no full
    # listing was found; the 13 shards + index are certain (QwenLM/Qwen3-VL issue #1588 quotes the index), the
    # other files are those of its generation (Qwen/Qwen3-VL-8B-Instruct's hash list, ModelScope copy:
    # chat_template.json, video_preprocessor_config.json, ...), the template as .json per the Hub API's
    # "processor_config": {"chat_template": ...} of the 30B
    "tiny-random-qwen3-vl-moe": {
        "config.json", "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json", "chat_template.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # Qwen/Qwen3.5-27B @ fc05daec18b0a78c049392ed2e771dde82bdf654: a 23-file snapshot manifest
    # (https://huggingface.co/Qwen/Qwen3.5-27B/tree/fc05daec18b0a78c049392ed2e771dde82bdf654): .gitattributes,
    # README.md, chat_template.jinja, config.json, generation_config.json, merges.txt, 11 shards + index,
    # preprocessor_config.json, tokenizer.json, tokenizer_config.json, video_preprocessor_config.json, vocab.json;
    # no chat_template.json, no processor_config.json
    "tiny-random-qwen3.5": {
        "config.json", "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # Qwen/Qwen3.5-35B-A3B @ 59d61f3ce65a6d9863b86d2e96597125219dc754: 28 files read from
    # https://huggingface.co/api/models/Qwen/Qwen3.5-35B-A3B/tree/59d61f3ce65a6d9863b86d2e96597125219dc754 (a
    # public audit script's BF16_MODEL_FILES): the 27B's set plus LICENSE, 14 shards + index
    "tiny-random-qwen3.5-moe": {
        "config.json", "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    },
    # llava-hf/llava-v1.6-mistral-7b-hf: the files github.com/fuliucansheng/unitorch's pretrained_llava_infos
    # fetches from resolve/main (config.json, chat_template.json, preprocessor_config.json, tokenizer.json,
    # tokenizer_config.json, special_tokens_map.json, tokenizer.model, 4 shards); the rest: see UNCONFIRMED
    "tiny-random-next": {
        "config.json", "preprocessor_config.json", "chat_template.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "tokenizer.model", "generation_config.json", "processor_config.json", "added_tokens.json",
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
    "tiny-random-next": ({"tokenizer.model"}, set()),
}
# Files of RELEASE_FILES whose presence in the release is not confirmed: the built-in writes them, and a copy
# without them must load to the same model, fed counts and answers (whichever way the Hub holds them).
UNCONFIRMED = {
    # llava-v1.6-mistral-7b-hf: no listing names or rules out generation_config.json, added_tokens.json or
    # processor_config.json (transformers PR #30962 announced processor options for the llava-hf checkpoints)
    "tiny-random-next": {"generation_config.json", "processor_config.json", "added_tokens.json"},
    # InternVL3-1B-hf: an earlier Hub tree page showed video_preprocessor_config.json; OpenGVLab/InternVL issue
    # #1222 (2025-10-30) says InternVL3-1B-HF has none (InternVL3.5-1B-HF "introduces" one), and hiyouga/LlamaFactory
    # #8210 / #8342 log transformers reading the InternVL3-hf video processor from preprocessor_config.json
    "tiny-random-internvl": {"video_preprocessor_config.json"},
}
KEEP_ALL = PruneSID(budget=4096, keep_cls=False, order="spatial")  # keeps every token of one view
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def assert_loads_to_the_built_model(name: str, directory=None) -> None:
    loaded = load_vlm(str(directory or builtin_directory(name)), device="cpu").model.state_dict()
    built, _ = builtin_models()[name].build()
    expected = built.state_dict()
    assert set(loaded) == set(expected)
    for key, tensor in loaded.items():
        assert torch.equal(tensor, expected[key]), key


@pytest.mark.parametrize("name", ["tiny-random-qwen3.5", "tiny-random-qwen3.5-moe"])
def test_qwen3_5_ships_its_template_as_jinja(name):
    directory = builtin_directory(name)
    assert (directory / "chat_template.jinja").is_file() and not (directory / "chat_template.json").exists()
    vlm = load_vlm(str(directory), device="cpu")
    assert vlm.processor.chat_template == (directory / "chat_template.jinja").read_text()


def _non_weight_files(directory) -> set[str]:
    files = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}
    return {name for name in files if not name.endswith((".safetensors", ".safetensors.index.json"))}


def _cli_compress(picture, model: str, capsys) -> dict:
    assert main(["compress", str(picture), "--model", model, "--budget", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    return {"tokens": report["tokens"], "visual_tokens": report["visual_tokens"], "kept": [view["kept"] for view in report["views"]]}


def _release_copy(name: str, tmp_path, without: set[str] = frozenset()):
    """The built-in's directory under the repository's name, holding the release's file set: the files
    the built-in writes and the release lacks are dropped, but for those the loader needs; ``without``:
    files dropped too (those of UNCONFIRMED)."""
    release = tmp_path / builtin_models()[name].layout.repo.split("/")[-1]
    shutil.copytree(builtin_directory(name), release)
    missing, extra = DIFFERENCES.get(name, (set(), set()))
    for file in extra | set(without):
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
    assert_loads_to_the_built_model(name, release)
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
    _assert_keeping_everything_is_the_unmodified_model(served, image)


def _assert_keeping_everything_is_the_unmodified_model(vlm, image) -> None:
    """LLaVA-NeXT with newlines="rows": its default "authors" layout feeds no newline tokens, so
    keeping every patch there is not the unmodified input."""
    if vlm.model.config.model_type == "llava_next":
        vlm = wrap(vlm.model, vlm.processor, name=vlm.name, newlines="rows")
    unmodified, kept = (vlm.chat(image, QUESTION, press=choice, max_new_tokens=3) for choice in (None, KEEP_ALL))
    assert kept.visual_tokens == unmodified.visual_tokens and kept.text == unmodified.text


@pytest.mark.parametrize("name", sorted(UNCONFIRMED))
def test_the_release_without_its_unconfirmed_files_loads_the_same(name, tmp_path):
    """Catches a loader that needs a file the release may not hold (UNCONFIRMED: LLaVA-NeXT's
    processor_config.json, generation_config.json, added_tokens.json; InternVL3-hf's
    video_preprocessor_config.json): without them the copy loads with the built-in's weights, feeds
    the built-in's count and answers as it does, and keeping every token answers as the unmodified
    model. generation_config.json holds generation defaults only (the built-ins' suppress non-printable
    bytes), so the copy answers with the built-in's."""
    missing, _ = DIFFERENCES.get(name, (set(), set()))
    assert UNCONFIRMED[name] <= RELEASE_FILES[name] - missing
    release = _release_copy(name, tmp_path, without=UNCONFIRMED[name])
    assert _non_weight_files(release) == RELEASE_FILES[name] - missing - UNCONFIRMED[name]
    assert_loads_to_the_built_model(name, release)
    loaded, builtin = load_vlm(str(release), device="cpu"), load_vlm(name, device="cpu")
    loaded.model.generation_config = builtin.model.generation_config
    image, press = scene(500, 400, seed=11), PruneSID(budget=32)
    ours, theirs = (vlm.chat(image, QUESTION, press=press, max_new_tokens=3) for vlm in (loaded, builtin))
    assert ours.visual_tokens == theirs.visual_tokens and sum(ours.visual_tokens) > 0 and ours.text == theirs.text
    _assert_keeping_everything_is_the_unmodified_model(loaded, image)


def _internvl_clip() -> Video:
    return Video.from_frames([scene(320, 240, seed=frame) for frame in range(3)])


def test_internvl_without_a_video_file_takes_the_video_settings_from_preprocessor_config(tmp_path):
    """InternVL3-1B-hf is reported without video_preprocessor_config.json; transformers then reads the
    video processor from preprocessor_config.json (448 px, ImageNet mean and std). Catches a stand-in
    that takes other settings there, as InternVLVideoProcessor's class defaults (384 px, CLIP mean and
    std) would be: the clip's pixels, fed counts and answer are the built-in's."""
    name = "tiny-random-internvl"
    release = _release_copy(name, tmp_path, without={"video_preprocessor_config.json"})
    image_settings = json.loads((release / "preprocessor_config.json").read_text())
    assert (image_settings["size"], image_settings["image_mean"], image_settings["image_std"]) == ({"height": 448, "width": 448}, IMAGENET_MEAN, IMAGENET_STD)
    loaded, builtin = load_vlm(str(release), device="cpu"), load_vlm(name, device="cpu")
    video = loaded.processor.video_processor
    assert (video.size.height, video.size.width, list(video.image_mean), list(video.image_std)) == (448, 448, IMAGENET_MEAN, IMAGENET_STD)
    clip = _internvl_clip()
    ours, theirs = (vlm.family.preprocess_video(list(clip.frames))["pixel_values"] for vlm in (loaded, builtin))
    assert ours.shape == (3, 3, 448, 448) and torch.equal(ours, theirs)
    press = PruneSID(budget=16)
    ours, theirs = (vlm.chat(clip, QUESTION, press=press, max_new_tokens=3) for vlm in (loaded, builtin))
    assert ours.visual_tokens == theirs.visual_tokens == [3 * 16] and ours.text == theirs.text


def test_internvl_reads_its_video_file_where_there_is_one(tmp_path):
    """transformers reads video_preprocessor_config.json first. Catches a stand-in that ignores it (the
    image processor's settings for clips whatever the file says): changed there, the clips' mean and std
    follow and the images' do not."""
    name = "tiny-random-internvl"
    release = _release_copy(name, tmp_path)
    video = json.loads((release / "video_preprocessor_config.json").read_text())
    assert (video["video_processor_type"], video["size"], video["image_mean"]) == ("InternVLVideoProcessor", {"height": 448, "width": 448}, IMAGENET_MEAN)
    video.update(image_mean=[0.25, 0.25, 0.25], image_std=[0.5, 0.5, 0.5])
    (release / "video_preprocessor_config.json").write_text(json.dumps(video))
    loaded, builtin = load_vlm(str(release), device="cpu"), load_vlm(name, device="cpu")
    assert (list(loaded.processor.video_processor.image_mean), list(loaded.processor.video_processor.image_std)) == ([0.25] * 3, [0.5] * 3)
    frames = list(_internvl_clip().frames)
    ours, theirs = (vlm.family.preprocess_video(frames)["pixel_values"] for vlm in (loaded, builtin))
    assert not torch.allclose(ours, theirs)
    image = scene(500, 400, seed=11)
    assert torch.equal(loaded.family.preprocess(image)["pixel_values"], builtin.family.preprocess(image)["pixel_values"])


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
