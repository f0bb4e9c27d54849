"""The evaluation plug-in's parts, in process: --model_args parsing, the press path between
lmms-eval's processor call and ``generate`` (against the unmodified model), error
propagation, the table script's arithmetic and ``prunesid calibrate``."""

from __future__ import annotations

import json
import sys

import numpy as np

import pytest
import torch

from prunesid import PRESSES, PruneSID
from prunesid.cli import main as prunesid_main
from prunesid.eval.pressing import ModelView, PressFailure, PressRun, ProcessorView, RecordWriter
from prunesid.pipeline import cut_placeholder_runs
from prunesid.eval.settings import parse_model_args
from prunesid.eval.table import main as table_main
from prunesid.methods import default_method, options_of
from tests.cli.test_methods_cli import _other_value
from tests.conftest import scene

LLAVA_ARGS = {"pretrained", "device", "dtype", "batch_size", "device_map", "chat_template", "use_cache"}


# --- --model_args --------------------------------------------------------------------------


def test_model_args_are_converted_to_the_press_fields():
    settings, rest = parse_model_args(
        {"pretrained": "x", "method": "prunesid", "budget": 64, "dynamic": "True", "groups": "None", "lam": 2, "phi_ref": 0.4, "device_map": "cuda"},
        LLAVA_ARGS, "prunesid_llava_hf",
    )
    assert rest == {"pretrained": "x", "device_map": "cuda"}
    assert settings.press == PruneSID(budget=64, dynamic=True, groups=None, lam=2.0, phi_ref=0.4)
    assert settings.describe()["method"] == "prunesid" and settings.records is None
    none, rest = parse_model_args({"method": "none", "pretrained": "x"}, LLAVA_ARGS, "prunesid_llava_hf")
    assert none.press is None and none.describe() == {"method": "none"} and rest == {"pretrained": "x"}


@pytest.mark.parametrize("method", sorted(PRESSES))
def test_method_is_matched_whatever_its_case_and_spaces(method):
    """``method=PruneSID`` (the label as people write it) and `` VisionZip `` are the
    registered presses, not an unknown method."""
    label = PRESSES[method].info.label
    for typed in (label, f" {method.upper()} ", method.capitalize()):
        settings, _ = parse_model_args({"method": typed, "budget": 32}, LLAVA_ARGS, "prunesid_llava_hf")
        assert settings.method == method and type(settings.press) is PRESSES[method] and settings.press.budget == 32
    with pytest.raises(ValueError, match=r"--model_args method must be one of \['none', 'prunesid', "):
        parse_model_args({"method": "Prune SID"}, LLAVA_ARGS, "prunesid_llava_hf")


def test_without_method_the_default_press_runs_with_its_defaults():
    settings, rest = parse_model_args({"pretrained": "x"}, LLAVA_ARGS, "prunesid_llava_hf")
    assert settings.press == PRESSES[default_method()]() and rest == {"pretrained": "x"}


def test_every_option_of_every_press_is_a_model_arg():
    """lmms-eval hands values as it parsed them (text, numbers, bools): each option of each
    press, at a value other than its default, reaches the press."""
    for method, cls in PRESSES.items():
        for spec in options_of(cls):
            value = _other_value(spec)
            typed = str(value).lower() if spec.kind is bool else str(value)
            settings, _ = parse_model_args({"method": method, spec.name: typed}, LLAVA_ARGS, "prunesid_llava_hf")
            assert getattr(settings.press, spec.name) == value, (method, spec.name)
            assert settings.describe()[spec.name] == value


@pytest.mark.parametrize("method", sorted(PRESSES))
def test_every_registered_press_is_built_from_model_args(method):
    settings, rest = parse_model_args({"method": method, "budget": 32, "pretrained": "x"}, LLAVA_ARGS, "prunesid_llava_hf")
    assert isinstance(settings.press, PRESSES[method]) and settings.press.budget == 32 and rest == {"pretrained": "x"}


# --- the press path ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_vlm):
    return tiny_vlm


def _run(vlm, press, tmp_path) -> PressRun:
    return PressRun(vlm=vlm, press=press, settings={"method": "test"}, records=RecordWriter(tmp_path / "records.jsonl"), model_id="test")


def _inputs(vlm, view, image, question="Is there a box?"):
    """The processor call lmms-eval's llava_hf / qwen2_5_vl make: chat-templated text, the images."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return view(text=[text], images=[image], padding=True, return_tensors="pt")


class Spy:
    """A model whose generate notes what it was given, then runs the real one."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        return self.model.generate(**kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def tiny_qwen():
    from prunesid import load_vlm

    return load_vlm("tiny-random-qwen2.5-vl", device="cpu")


@pytest.mark.parametrize("family", ["llava", "qwen2.5-vl"])
def test_a_keep_everything_press_answers_like_the_unmodified_model(family, request, tmp_path):
    """lmms-eval's own inputs (processor output as its llava_hf / qwen2_5_vl build them),
    through the press path with a press that keeps every token in place, give the unmodified
    model's greedy tokens: the plumbing (placeholder runs, features handed over instead of
    pixels, M-RoPE positions, prompt given back) changes nothing by itself."""
    vlm = request.getfixturevalue("tiny" if family == "llava" else "tiny_qwen")
    full = 576 if family == "llava" else None
    image = scene(320, 240, seed=3)
    run = _run(vlm, PruneSID(budget=100_000, keep_cls=False, order="spatial"), tmp_path)
    inputs = _inputs(vlm, ProcessorView(vlm.processor, run.calls, pressed=True), image)
    placeholders = int((inputs["input_ids"] == vlm.placeholder_token_id).sum())
    assert placeholders == (full or placeholders) > 16
    expected = vlm.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    got = ModelView(vlm.model, run).generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(got, expected)
    record = json.loads((tmp_path / "records.jsonl").read_text())
    assert record["visual_tokens"] == [placeholders] and record["images"][0]["unmodified_tokens"] == placeholders
    # and a real budget on the same inputs: Qwen-VL keeps N_eff = max(round(T N / 576), 16) of its T
    run = _run(vlm, PruneSID(budget=64), tmp_path / "pressed")
    inputs = _inputs(vlm, ProcessorView(vlm.processor, run.calls, pressed=True), image)
    ModelView(vlm.model, run).generate(**inputs, max_new_tokens=2, do_sample=False)
    record = json.loads((tmp_path / "pressed" / "records.jsonl").read_text())
    assert record["visual_tokens"] == [64 if family == "llava" else max(round(placeholders * 64 / 576), 16)]


def test_a_press_feeds_the_llm_its_budget_and_gives_lmms_eval_its_prompt_back(tiny, tmp_path):
    image = scene(320, 240, seed=4)
    run = _run(tiny, PruneSID(budget=16), tmp_path)
    inputs = _inputs(tiny, ProcessorView(tiny.processor, run.calls, pressed=True), image)
    spy = Spy(tiny.model)
    output = ModelView(spy, run).generate(**inputs, max_new_tokens=4, do_sample=False)
    (call,) = spy.calls
    placeholder = tiny.placeholder_token_id
    assert int((call["input_ids"] == placeholder).sum()) == 16
    assert call["input_ids"].shape[1] == inputs["input_ids"].shape[1] - 576 + 16
    assert "pixel_values" not in call and "mm_encoder_outputs" in call
    assert call["mm_encoder_outputs"]["image"].pooler_output[0].shape[0] == 16
    assert torch.equal(output[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])  # lmms-eval trims this off
    assert output.shape[1] > inputs["input_ids"].shape[1]
    record = json.loads((tmp_path / "records.jsonl").read_text())
    view = record["images"][0]["views"][0]
    assert record["visual_tokens"] == [16] and view["num_kept"] == 15 and view["reserved"] == 1
    assert sorted(view["kept"]) == sorted(run.vlm.compress(run.vlm.encode(image), PruneSID(budget=16))[0].indices[0].tolist())


def test_video_llava_frames_through_the_press_path(tmp_path):
    """lmms-eval's video_llava hands its processor the clip as a [8, H, W, 3] array; the
    frames are compressed one by one (N per frame, CLS included): 8 x 17 = 136 video tokens.
    A press that keeps everything gives the unmodified model's tokens. (The processor's own
    video path needs torchvision, absent here: the prompt and pixels are built as it would.)"""
    import numpy as np

    from prunesid import load_vlm

    vlm = load_vlm("tiny-random-video-llava", device="cpu")
    frames = [scene(320, 240, seed=seed) for seed in range(8)]
    placeholder = vlm.family.placeholder_for("video")
    ids = torch.tensor(vlm.processor.tokenizer("USER: <video>\nWhat happens? ASSISTANT:")["input_ids"])
    repeats = torch.ones_like(ids)
    repeats[ids == placeholder] = 8 * 257  # what the unmodified model feeds: every frame's CLS + 256 patches
    ids = torch.repeat_interleave(ids, repeats)[None]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **vlm.family.preprocess_video(frames)}
    expected = vlm.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    clip = np.stack([np.asarray(frame) for frame in frames])
    for press, tokens in ((PruneSID(budget=100_000, order="spatial"), 8 * 257), (PruneSID(budget=17), 8 * 17)):
        run = _run(vlm, press, tmp_path / str(tokens))
        processor = ProcessorView(lambda **kwargs: inputs, run.calls, pressed=True, takes_video=True)
        output = ModelView(vlm.model, run).generate(**processor(text="USER: <video>", videos=clip), max_new_tokens=4, do_sample=False)
        record = json.loads((tmp_path / str(tokens) / "records.jsonl").read_text())
        (video,) = record["images"]
        assert record["visual_tokens"] == [tokens] and video["modality"] == "video" and len(video["views"]) == 8
        if tokens == 8 * 257:
            assert torch.equal(output, expected)
        else:
            assert all(view["visual_tokens"] == 17 and view["reserved"] == 1 for view in video["views"])
    with pytest.raises(PressFailure, match="video inputs cannot be compressed"):
        ProcessorView(lambda **kwargs: inputs, [], pressed=True, takes_video=False)(text="x", videos=clip)


def test_a_qwen_clip_as_qwen_vl_utils_gives_it_through_the_press_path(tiny_qwen, tmp_path):
    """lmms-eval's Qwen2.5-VL classes hand the processor each clip as qwen-vl-utils made it:
    a float [T, C, H, W] tensor (0..255, already resized) and its metadata. The press takes
    the clip from the processor's output (its frames, grid and second_per_grid_ts), so a
    press keeping everything gives the unmodified tokens and N = 64 feeds N_eff per group."""
    vlm = tiny_qwen
    frames = torch.stack([torch.from_numpy(np.asarray(scene(224, 168, seed=seed))).permute(2, 0, 1) for seed in range(6)]).float()
    metadata = [{"fps": 6.0, "frames_indices": [0, 2, 4, 6, 8, 10], "total_num_frames": 12, "video_backend": "decord"}]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = vlm.processor(text=[text], videos=[frames], video_metadata=metadata, padding=True, return_tensors="pt")
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2 / 3)  # 6 of 12 frames at 6 fps: 3 fps sampled
    groups, rows, cols = (int(v) for v in inputs["video_grid_thw"][0])
    per_group, full = rows * cols // 4, groups * rows * cols // 4
    vlm.model.model.rope_deltas = None
    expected = vlm.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    for press, tokens in ((PruneSID(budget=100_000, order="spatial"), full), (PruneSID(budget=64), groups * max(round(per_group * 64 / 576), 16))):
        run = _run(vlm, press, tmp_path / str(tokens))
        view = ProcessorView(vlm.processor, run.calls, pressed=True, takes_video=True)
        given = view(text=[text], videos=[frames], video_metadata=metadata, padding=True, return_tensors="pt")
        spy = Spy(vlm.model)
        output = ModelView(spy, run).generate(**given, max_new_tokens=5, do_sample=False)
        (call,) = spy.calls
        assert int((call["input_ids"] == vlm.family.video_token_id).sum()) == tokens
        record = json.loads((tmp_path / str(tokens) / "records.jsonl").read_text())
        assert record["visual_tokens"] == [tokens] and len(record["images"][0]["views"]) == groups == 3
        if tokens == full:
            assert torch.equal(output, expected)


def test_press_errors_pass_lmms_eval_except_exception(tiny, tmp_path):
    """A prompt that does not hold the image's 576 placeholders is refused, and the error is a
    PressFailure, which ``except Exception`` (lmms-eval's guard around generate, that would
    score an empty answer) does not catch."""
    run = _run(tiny, PruneSID(budget=16), tmp_path)
    inputs = _inputs(tiny, ProcessorView(tiny.processor, run.calls, pressed=True), scene(200, 200, seed=5))
    inputs["input_ids"] = inputs["input_ids"][:, 10:]  # drops placeholders
    with pytest.raises(PressFailure) as failure:
        try:
            ModelView(tiny.model, run).generate(**inputs, max_new_tokens=2)
        except Exception:  # what lmms-eval's llava_hf does around generate
            pytest.fail("the press error was caught by except Exception")
    assert isinstance(failure.value.error, ValueError) and "placeholder" in str(failure.value.error)


def test_cut_placeholder_runs_keeps_each_images_first_tokens():
    ids = torch.tensor([[1, 9, 9, 9, 2, 9, 9, 3]])
    assert cut_placeholder_runs(ids, 9, [3, 2], [1, 2]).tolist() == [[1, 9, 2, 9, 9, 3]]
    assert cut_placeholder_runs(torch.tensor([[9, 9, 9, 9, 5]]), 9, [2, 2], [1, 1]).tolist() == [[9, 9, 5]]
    with pytest.raises(ValueError, match="room for 2"):
        cut_placeholder_runs(ids, 9, [3, 2], [1, 3])


# --- the lmms-eval class, in process -------------------------------------------------------


def test_generate_until_raises_the_press_error_and_removes_its_views(tmp_path, monkeypatch):
    pytest.importorskip("lmms_eval")
    from lmms_eval.api.instance import Instance
    from prunesid.families.llava.lmms_eval_model import LlavaHf

    monkeypatch.chdir(tmp_path)
    lm = LlavaHf(pretrained="tiny-random", device="cpu", method="prunesid", budget=16, records=str(tmp_path / "r.jsonl"))
    processor, model = lm._image_processor, lm.model
    image = scene(160, 120, seed=6)
    lm.task_dict = {"t": {"test": [{"q": "Is it red?"}]}}

    def doc_to_messages(doc):
        return [{"role": "user", "content": [{"type": "image", "url": image}, {"type": "text", "text": doc["q"]}]}]

    request = Instance("generate_until", ("ctx", doc_to_messages, {"max_new_tokens": 2}, 0, "t", "test"), idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1})
    (answer,) = lm.generate_until([request])
    line = json.loads((tmp_path / "r.jsonl").read_text())
    assert line["task"] == "t" and line["doc_id"] == 0 and line["visual_tokens"] == [16]
    assert lm._image_processor is processor and lm.model is model  # the views are gone

    monkeypatch.setattr(lm.prunesid_vlm.family.layout, "unmodified_tokens", lambda image_size, modality="image": 577)
    with pytest.raises(ValueError, match="placeholder tokens"):
        lm.generate_until([request])
    assert lm._image_processor is processor and lm.model is model


# --- the table -----------------------------------------------------------------------------


def _results(path, model_args: str, scores: dict, date: str):
    tasks = {"pope": "pope_f1_score", "mme": "mme_perception_score"}
    results = {task: {"alias": task, f"{tasks[task]},none": value, f"{tasks[task]}_stderr,none": 0.01} for task, value in scores.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results, "config": {"model": "prunesid_llava_hf", "model_args": model_args}, "date": date}))


def test_table_relative_performance_per_method_and_budget(tmp_path, capsys):
    base = "pretrained=llava-hf/llava-1.5-7b-hf"
    _results(tmp_path / "a" / "1_results.json", f"{base},method=none", {"pope": 0.8, "mme": 1500.0}, "1")
    _results(tmp_path / "b" / "1_results.json", f"{base},method=prunesid,budget=64", {"pope": 0.7, "mme": 1400.0}, "1")
    _results(tmp_path / "c" / "1_results.json", f"{base},method=prunesid,budget=64", {"pope": 0.76}, "2")  # a later POPE run
    _results(tmp_path / "d" / "1_results.json", f"{base},method=random,budget=192", {"pope": 0.4, "mme": 750.0}, "1")
    _results(tmp_path / "e" / "1_results.json", f"{base},method=prunesid,budget=64,dynamic=True", {"pope": 0.8}, "1")
    assert table_main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "### llava-hf/llava-1.5-7b-hf"
    assert lines[2] == "| Method | Tokens | POPE | MME | Rel. |"
    body = [line for line in lines[4:] if line]
    assert body == [
        "| all tokens | all | 80.0 (100.0%) | 1500.0 (100.0%) | 100.0% |",
        "| *Retain 192 tokens* | |  |  | |",
        "| random | 192 | 40.0 (50.0%) | 750.0 (50.0%) | 50.0% |",
        "| *Retain 64 tokens* | |  |  | |",
        # POPE from the later run: 0.76 / 0.8 = 95%; MME 1400 / 1500 = 93.3%; mean 94.2%
        "| prunesid | 64 | 76.0 (95.0%) | 1400.0 (93.3%) | 94.2% |",
        "| prunesid (dyn) | 64 | 80.0 (100.0%) | — | — |",
    ]


def test_table_refuses_a_folder_without_results(tmp_path, capsys):
    assert table_main([str(tmp_path)]) == 2
    assert "no lmms-eval results" in capsys.readouterr().err


# --- prunesid calibrate --------------------------------------------------------------------


def test_calibrate_prints_the_mean_phi_of_the_images(tmp_path, capsys, tiny):
    paths = []
    for seed in range(3):
        path = tmp_path / f"image{seed}.png"
        scene(300 + 40 * seed, 200, seed=seed).save(path)
        paths.append(path)
    assert prunesid_main(["calibrate", str(tmp_path), "--model", "tiny-random"]) == 0
    printed = float(capsys.readouterr().out.strip())
    phis = [tiny.encode(str(path)).information()[0] for path in paths]
    assert printed == pytest.approx(sum(phis) / 3, abs=1e-6)
    assert prunesid_main(["calibrate", str(paths[0]), "--model", "tiny-random", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1 and report["phi_ref"] == pytest.approx(phis[0], abs=1e-6)
    assert prunesid_main(["calibrate", str(tmp_path / "missing.png")]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_loading_the_package_does_not_import_lmms_eval():
    import subprocess

    code = "import prunesid.eval, prunesid.eval.table, sys; print('lmms_eval' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_table_labels_and_grid_rows_come_from_the_declarations():
    from prunesid.eval.grid import rows
    from prunesid.eval.table import _label

    # a bool option by its tag, another option as name=value, a default value and lmms-eval's own arguments not at all
    args = {"dynamic": "True", "keep_cls": "false", "grouping": "kmeans", "solver": "exact", "budget": "64", "device_map": "auto"}
    assert _label("prunesid", args) == "prunesid (dyn, no CLS, grouping=kmeans)"
    assert _label("divprune", {"keep_cls": "true", "space": "tower"}) == "divprune (CLS, space=tower)"
    assert _label("divprune", {"keep_cls": "false"}) == "divprune"  # its default
    assert rows(["prunesid", "random"], [16, 32], variants=True) == [
        ("none", "method=none"),
        ("prunesid-32", "method=prunesid,budget=32"), ("prunesid-dyn-32", "method=prunesid,budget=32,dynamic=True"),
        ("random-32", "method=random,budget=32"),
        ("prunesid-16", "method=prunesid,budget=16"), ("prunesid-dyn-16", "method=prunesid,budget=16,dynamic=True"),
        ("random-16", "method=random,budget=16"),
    ]
    assert [name for name, _ in rows(["prunesid"], [16], variants=False)] == ["none", "prunesid-16"]


def test_table_refuses_a_run_of_an_unknown_press_without_a_budget(tmp_path, capsys):
    _results(tmp_path / "1_results.json", "pretrained=x,method=fastv", {"pope": 0.5}, "1")
    assert table_main([str(tmp_path)]) == 2
    assert "method 'fastv' is not a registered press and the run gives no budget=" in capsys.readouterr().err
