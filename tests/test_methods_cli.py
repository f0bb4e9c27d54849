"""`prunesid chat|compress --method ...`: every method from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prunesid import PRESSES
from prunesid.cli import main
from tests.conftest import scene


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-methods") / "scene.png"
    scene(640, 480).save(path)
    return path


@pytest.mark.parametrize("method", sorted(PRESSES))
def test_compress_json_with_every_method(image_file, capsys, method):
    assert main(["compress", str(image_file), "--method", method, "--budget", "48", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (view,) = report["views"]
    assert view["method"] == method and report["visual_tokens"] == 48
    merged = view.get("num_merged", 0)
    assert view["num_kept"] + merged + view["reserved"] == 48
    assert merged == (8 if method == "visionzip" else 0)  # 48 * 10 / 64 = 7.5 contextual tokens, rounded half up


def test_visionzip_text_output_and_overlay(image_file, tmp_path, capsys):
    out = tmp_path / "kept.png"
    assert main(["compress", str(image_file), "--method", "visionzip", "--budget", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kept 53 of 576 patches + 10 merged tokens (budget 64)" in text
    assert "the language model receives 64 visual tokens" in text
    with Image.open(out) as drawn:
        assert drawn.size == (640, 480)


def test_chat_with_a_method(image_file, capsys):
    assert main(["chat", str(image_file), "What is this?", "--method", "divprune", "--budget", "32", "--max-new-tokens", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["visual_tokens"] == [32] and report["selection"][0]["method"] == "divprune"


def test_no_cls_reaches_the_methods_that_pass_it(image_file, capsys):
    assert main(["compress", str(image_file), "--method", "random", "--budget", "40", "--no-cls", "--json"]) == 0
    (view,) = json.loads(capsys.readouterr().out)["views"]
    assert view["reserved"] == 0 and view["num_kept"] == 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "visionzip", "--grouping", "kmeans"], "--grouping is a PruneSID option"),
        (["--method", "uniform", "--dynamic"], "--dynamic is a PruneSID option"),
        (["--method", "divprune", "--lam", "2"], "--lam is a PruneSID option"),
        (["--method", "random", "--budget", "0"], "budget must be a positive integer"),
    ],
)
def test_bad_method_settings_exit_2_with_one_line(image_file, capsys, args, message):
    assert main(["compress", str(image_file), *args]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_an_unknown_method_is_refused_by_the_parser(image_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(image_file), "--method", "fastv"])
    assert exit_info.value.code == 2 and "invalid choice: 'fastv'" in capsys.readouterr().err


def test_visionzip_on_a_tower_without_cls_says_why(image_file, capsys):
    assert main(["compress", str(image_file), "--method", "visionzip", "--model", "tiny-random-qwen2-vl"]) == 2
    assert "CLS token's attention" in capsys.readouterr().err
