"""The command line as users type it: ``--out ~/overlay.png`` and a Qwen clip's ``--budget``.

Each test names the one-line bug it was written against; each was run with that bug in
place and failed.
"""

from __future__ import annotations

import json

import pytest

from prunesid.cli import main


def _n_eff(tokens: int, budget: int) -> int:
    return tokens if tokens <= 16 else max(round(tokens * budget / 576), 16)


def test_out_expands_the_home_folder(monkeypatch, tmp_path, capsys):
    """Bug caught: ``--out ~/overlay.png`` not expanded (checked expanded, then written to the
    path as typed: "No such file or directory")."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["compress", "assets/street.png", "--model", "tiny-random", "--budget", "32", "--out", "~/overlay.png"]) == 0
    assert (tmp_path / "overlay.png").stat().st_size > 0


def test_out_in_a_missing_folder_is_refused_before_loading(tmp_path, capsys):
    assert main(["compress", "assets/street.png", "--model", "tiny-random", "--out", str(tmp_path / "nope" / "x.png")]) == 2
    assert "the folder" in capsys.readouterr().err


@pytest.mark.parametrize("budget", [32, 128])
def test_a_qwen_clip_honours_the_budget_given(capsys, budget):
    """Bug caught: a Qwen clip's ``--budget`` replaced by the default N = 64 per 576 (the
    per-frame default meant for Video-LLaVA applied whether or not a budget was given)."""
    assert main(["compress", "assets/clip.mp4", "--model", "tiny-random-qwen2.5-vl", "--budget", str(budget), "--json"]) == 0
    views = json.loads(capsys.readouterr().out)["views"]
    assert len(views) == 8
    assert all(view["budget_requested"] == budget for view in views)
    assert all(view["num_kept"] == _n_eff(view["tokens"], budget) for view in views)
