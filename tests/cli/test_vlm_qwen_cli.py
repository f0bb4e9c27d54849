"""`prunesid chat|compress IMAGE --model tiny-random-qwen2.5-vl`, as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prunesid.cli import main
from tests.conftest import scene

MODEL = "tiny-random-qwen2.5-vl"


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qwen-cli") / "scene.png"
    scene(640, 480).save(path)
    return path


def test_compress_reports_n_and_n_eff_on_the_merged_token_grid(image_file, capsys, tmp_path):
    overlay = tmp_path / "overlay.png"
    assert main(["compress", str(image_file), "--model", MODEL, "--budget", "64", "--json", "--out", str(overlay)]) == 0
    report = json.loads(capsys.readouterr().out)
    (view,) = report["views"]
    tokens = report["tokens"]
    assert tokens == (476 // 28) * (644 // 28)  # the processor's smart resize of 640 x 480: 17 x 23 merged tokens
    n_eff = max(round(tokens * 64 / 576), 16)
    assert view["budget_requested"] == 64 and view["budget_effective"] == view["budget"] == n_eff
    assert report["visual_tokens"] == view["num_kept"] == len(set(view["kept"])) == n_eff
    assert view["preset"] == "qwen2-vl" and view["reserved"] == 0 and view["label"] == "image"
    assert view["box"] == [0.0, 0.0, 640.0, 480.0]
    assert view["num_groups"] == max(n_eff // 4, 4) and view["lam"] == pytest.approx(max(n_eff / (tokens / 18), 1))
    assert Image.open(overlay).size[0] > 640

    assert main(["compress", str(image_file), "--model", MODEL, "--budget", "64"]) == 0
    text = capsys.readouterr().out
    assert f"kept {n_eff} of {tokens}" in text and f"N=64, N_eff={n_eff}" in text


def test_chat_answers_with_the_compressed_tokens(image_file, capsys):
    assert main(["chat", str(image_file), "What is this?", "--model", MODEL, "--max-new-tokens", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (view,) = report["selection"]
    assert report["visual_tokens"] == [view["budget_effective"]] and isinstance(report["answer"], str)

    assert main(["chat", str(image_file), "What is this?", "--model", MODEL, "--max-new-tokens", "2", "--max-pixels", str(64 * 28 * 28)]) == 0
    assert "16 visual tokens" in capsys.readouterr().err  # at most 64 merged tokens: N_eff is the floor of 16


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-pixels", "100"], "max_pixels must be at least 784"),
        (["--min-pixels", "0"], "min_pixels must be a positive integer"),
        (["--budget", "0"], "budget"),
    ],
)
def test_bad_options_exit_2_with_one_line(image_file, capsys, extra, message):
    assert main(["compress", str(image_file), "--model", MODEL, *extra]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("prunesid compress: error:") and message in error


def test_pixel_limits_are_refused_for_llava(image_file, capsys):
    assert main(["compress", str(image_file), "--model", "tiny-random", "--min-pixels", "3136"]) == 2
    assert "min_pixels applies only to Qwen-VL models" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl"])
def test_chat_takes_a_clip_with_n_per_576_merged_tokens_of_each_group(model, capsys):
    """A clip: 16 frames sampled, 8 temporal groups, each keeping N_eff of its merged tokens
    (the default budget is N = 64 per 576, as for an image, not Video-LLaVA's 17 per frame)."""
    assert main(["chat", "assets/clip.mp4", "What happens?", "--model", model, "--json", "--max-new-tokens", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    views = report["selection"]
    assert [view["label"] for view in views] == [f"frames {2 * g + 1}-{2 * g + 2}" for g in range(8)]
    tokens = views[0]["tokens"]
    assert all(view["budget_requested"] == 64 and view["num_kept"] == max(round(tokens * 64 / 576), 16) for view in views)
    assert report["visual_tokens"] == [sum(view["num_kept"] for view in views)]
    assert main(["compress", "assets/clip.mp4", "--model", model, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clip"]["frames"] == 16 and len(report["views"]) == 8
