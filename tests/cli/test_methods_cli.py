"""`prunesid chat|compress --method ...`: every method from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prunesid import PRESSES
from prunesid.cli import _parser, _press, main
from prunesid.methods import Press, options_of, presses
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
        (["--method", "visionzip", "--grouping", "kmeans"], "--grouping is an option of prunesid; it does not apply to --method visionzip"),
        (["--method", "uniform", "--dynamic"], "--dynamic is an option of prunesid; it does not apply to --method uniform"),
        (["--method", "divprune", "--lam", "2"], "--lam is an option of prunesid; it does not apply to --method divprune"),
        (["--method", "uniform", "--seed", "3"], "--seed is an option of prunesid, random; it does not apply to --method uniform"),
        (["--method", "random", "--budget", "0"], "budget must be a positive integer"),
        (["--method", "random", "--budget", "many"], "--budget must be an integer, got 'many'"),
        (["--method", "visionzip", "--contextual", "64"], "contextual must be at most budget - 1 (the CLS) = 63, got 64"),
        (["--method", "divprune", "--space", "pixels"], "space must be one of ['projected', 'tower'], got 'pixels'"),
        (["--method", "prunesid", "--preset", "qwen3"], "preset must be one of ['llava', 'qwen2-vl'], got 'qwen3'"),
        (["--method", "prunesid", "--lam", "-1"], "lam must be a positive finite number or None, got -1.0"),
    ],
)
def test_bad_method_settings_exit_2_with_one_line(image_file, capsys, args, message):
    assert main(["compress", str(image_file), *args]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def _other_value(spec):
    """A valid value of the option ``spec`` other than its default."""
    if spec.kind is bool:
        return not spec.default
    if spec.choices is not None:
        return next(choice for choice in spec.choices if choice != spec.default)
    if spec.kind is float:
        return 0.5
    return (spec.default if spec.default is not None else (spec.minimum or 0)) + 1


EVERY_OPTION = [(method, spec) for method, cls in presses().items() for spec in options_of(cls)]


@pytest.mark.parametrize(("method", "spec"), EVERY_OPTION, ids=[f"{m}-{s.name}" for m, s in EVERY_OPTION])
def test_every_option_of_every_press_is_a_flag_that_reaches_the_press(method, spec):
    """The flags are derived from the registry: each option of each method can be set."""
    value = _other_value(spec)
    if spec.kind is bool:
        flag = spec.flags[0] if value else "--no-" + spec.flags[0][2:]
        given = [flag]
    else:
        given = [spec.flags[0], str(value)]
    args = _parser().parse_args(["compress", "x.png", "--method", method, *given])
    press = _press(args)
    assert isinstance(press, presses()[method]) and getattr(press, spec.name) == value
    untouched = {other.name: other.default for other in options_of(type(press)) if other.name != spec.name}
    assert {name: getattr(press, name) for name in untouched} == untouched  # the others keep the press's defaults


def test_help_lists_every_method_and_option_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines (and at hyphens)
    shown = {spec.name: spec for spec in options_of(Press)}  # the options every press shares: their common help
    for method, cls in presses().items():
        info = cls.info
        assert "".join(f"{method}: {info.summary}{f' ({info.label}, {info.paper})' if info.paper else ''}".split()) in text
        for spec in options_of(cls):
            shown.setdefault(spec.name, spec)  # an option several methods share: its first help
    for spec in shown.values():
        assert f"{spec.flags[0]}" in text and "".join(spec.help.split()) in text
    assert "--no-cls" in text and "--no-keep-cls" in text  # a bool option's both spellings


def test_an_unknown_method_is_refused_by_the_parser(image_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(image_file), "--method", "fastv"])
    assert exit_info.value.code == 2 and "invalid choice: 'fastv'" in capsys.readouterr().err


def test_visionzip_on_a_tower_without_cls_says_why(image_file, capsys):
    assert main(["compress", str(image_file), "--method", "visionzip", "--model", "tiny-random-qwen2-vl"]) == 2
    assert "CLS token's attention" in capsys.readouterr().err
