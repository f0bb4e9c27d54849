"""The `prunesid` command, driven the way a user types it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prunesid.cli import main
from tests.conftest import scene


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "scene.png"
    scene(640, 480).save(path)
    return path


def test_compress_json_reports_the_selection(image_file, capsys):
    assert main(["compress", str(image_file), "--model", "tiny-random", "--budget", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (view,) = report["views"]
    assert report["visual_tokens"] == 64 and report["tokens"] == 576
    assert view["num_kept"] == len(set(view["kept"])) == 63 and view["reserved"] == 1
    assert len(view["groups"]) == 576 and len(view["quotas"]) == view["num_groups"] == 16
    assert sum(view["quotas"]) == 63
    assert view["tau"] == pytest.approx(view["lam"] * view["rho"]) and view["phi"] == pytest.approx(1 - view["rho"])


def test_compress_kmeans_dynamic_on_next_tiles(image_file, capsys):
    args = ["compress", str(image_file), "--model", "tiny-random-next", "--budget", "32", "--grouping", "kmeans", "--dynamic", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [view["label"] for view in report["views"]] == ["base", "tile 0,0", "tile 0,1", "tile 1,0", "tile 1,1"]
    assert all(view["grouping"] == "kmeans" and view["dynamic"] for view in report["views"])
    budgets = [view["budget"] for view in report["views"]]
    # Views are selected in two calls (base; the four equally padded tiles), each rounding
    # its own share: without clamping the total stays within one token per call of 5 x 32.
    if not any(view["budget_clamped"] for view in report["views"]):
        assert abs(sum(budgets) - 5 * 32) <= 2
    by_phi = sorted(report["views"], key=lambda view: view["phi"])
    assert [view["budget"] for view in by_phi] == sorted(budgets) and len(set(budgets)) > 1


def test_chat_json_answers_with_timings(image_file, capsys):
    assert main(["chat", str(image_file), "What is this?", "--budget", "64", "--max-new-tokens", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["visual_tokens"] == [64] and isinstance(report["answer"], str)
    assert {"vision_ms", "select_ms", "prefill_ms", "decode_ms"} <= set(report["timings_ms"])


def test_chat_streams_text_and_reports_progress(image_file, capsys):
    assert main(["chat", str(image_file), "What is this?", "--max-new-tokens", "3", "--grouping", "random"]) == 0
    captured = capsys.readouterr()
    assert "Loading tiny-random on cpu" in captured.err and "64 visual tokens" in captured.err
    assert captured.out.endswith("\n")  # the answer ends its line
    assert "no --model given: tiny-random, an offline built-in with random weights" in captured.err


def test_a_model_given_gets_no_random_weights_note(image_file, capsys):
    assert main(["compress", str(image_file), "--model", "tiny-random", "--json"]) == 0
    assert "random weights" not in capsys.readouterr().err


@pytest.mark.parametrize("out", ["/no/such/folder/overlay.png", "{folder}"])
def test_an_out_path_that_cannot_be_written_exits_2_before_loading(image_file, tmp_path, capsys, out):
    out = out.format(folder=tmp_path)
    assert main(["compress", str(image_file), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Loading" not in err  # refused before the model is loaded
    assert err.strip().splitlines()[-1].startswith(f"prunesid compress: error: --out {out}:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["chat", "{image}", ""], "the question is empty"),
        (["chat", "/no/such.png", "hi"], "image file '/no/such.png' does not exist"),
        (["compress", "{image}", "--budget", "0"], "budget must be a positive integer, got 0"),
        (["compress", "{image}", "--model", "llava-tiny"], "unknown model 'llava-tiny'"),
        (["compress", "{text}"], "is not an image PIL can read"),
    ],
)
def test_bad_input_exits_2_with_a_message_not_a_traceback(image_file, tmp_path, capsys, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    args = [arg.format(image=image_file, text=text) for arg in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_the_console_script_is_installed(image_file, tmp_path):
    out = tmp_path / "overlay.png"
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "prunesid"), "compress", str(image_file), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "the language model receives 64 visual tokens" in result.stdout
    from PIL import Image

    with Image.open(out) as overlay:
        assert overlay.width > overlay.height  # three layers side by side


def test_compress_text_prints_the_numbers_the_method_declares(image_file, capsys):
    """PruneSID declares rho, phi, tau, K and the quotas as its per-view report."""
    assert main(["compress", str(image_file), "--budget", "32", "--seed", "3", "--preset", "llava"]) == 0
    (line, total) = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"image: kept 31 of 576 patches \(budget 32\), rho 0\.\d{3}, phi 0\.\d{3}, tau \d\.\d{3}, K 8, quotas \[[\d, ]+\]", line), line
    assert total == "the language model receives 32 visual tokens"
