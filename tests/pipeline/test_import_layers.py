"""The press path sits between the families below it and the VLM facade above it, without a
circle: each of these modules imports first, in a fresh interpreter, and the public names
resolve. Catches the facade put back into ``prunesid.vlm``'s own import (``from
prunesid.vlm.model import VLM`` at its top): ``import prunesid.pipeline`` then fails with
"cannot import name 'PressedInputs' from partially initialized module"."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("first", ["prunesid.pipeline", "prunesid.vlm.model", "prunesid.vlm"])  # one interpreter each: ~15 s of imports
def test_each_layer_imports_first(first):
    code = (
        f"import {first}\n"
        "import prunesid\n"
        "from prunesid.vlm import FAMILIES, VLM, load_vlm, wrap\n"
        "assert prunesid.load_vlm is load_vlm and callable(prunesid.press_applied) and FAMILIES\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_mini_gemini_model_imports_nothing_of_its_checkpoint_format():
    """The checkpoint module builds and writes the model, so the model module must not import it
    back, not even inside a function. Catches the circle ``mini_gemini_checkpoint <->
    mini_gemini_model`` returning, e.g. a ``MiniGeminiModel.save_pretrained`` that imports
    ``save_original`` when called."""
    tree = ast.parse((ROOT / "prunesid" / "families" / "mini_gemini" / "model.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "prunesid.families.mini_gemini.checkpoint" not in imported, sorted(filter(None, imported))
