"""A processor loaded first thing in a fresh process gets its family's stand-in video
processor: the stand-ins are registered by the family adapters, which a vLLM process has not
imported when it asks for the processor. Catches the lookup made before the adapters are
loaded ("'Qwen2_5_VLProcessorWithoutVideoProcessor' object has no attribute
'video_processor'", which stopped vLLM serving Qwen2.5-VL without torchvision)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunesid.family_kit import builtin_directory

pytestmark = pytest.mark.slow  # a fresh interpreter

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import sys\n"
    "from prunesid.family_kit.processors import load_processor\n"
    "processor = load_processor(sys.argv[1], sys.argv[2])\n"
    "print(type(processor.video_processor).__name__)\n"
)


@pytest.mark.parametrize("builtin, model_type, stand_in", [
    ("tiny-random-qwen2.5-vl", "qwen2_5_vl", "QwenVideoProcessor"),
    ("tiny-random-video-llava", "video_llava", "FramewiseVideoProcessor"),
])
def test_the_first_processor_loaded_has_its_stand_in(builtin, model_type, stand_in):
    directory = builtin_directory(builtin)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(directory), model_type], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == stand_in
