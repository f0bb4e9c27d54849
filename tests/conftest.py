"""Shared fixtures (the offline tiny models are built once per test session) and the test
tiers: ``make test-fast`` runs what is marked neither browser, eval nor slow."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


# Whole files of a tier; single tests elsewhere carry their own marker.
TIER_FILES = {
    "app/test_app_browser.py": "browser",  # Chromium through Playwright
    "eval/test_eval_lmms.py": "eval",  # lmms-eval's own command line on a generated task
}
APP_FOLDER = "app"  # every test there talks to a launched app.py
LAUNCHED_APP_FIXTURES = {"app_url", "slow_app_url"}
BROWSER_FIXTURES = {"browser"}
# Built-ins too heavy for the quick tier: MGM-HD runs two towers on five views of a 1536 px image;
# LLaVA-OneVision feeds ~3,000 tokens for a 640 x 480 image (729 per view, unpadded tile rows);
# InternVL cuts a 640 x 480 image into 13 views of 448 px (3,328 tokens).
SLOW_BUILTINS = ("tiny-random-mgm-hd", "tiny-random-llava-onevision", "tiny-random-internvl")
# Qwen3.5 (its name also marks -qwen3.5-moe) and Qwen3-VL-MoE run every Qwen-VL image and clip
# test: about 35 s per built-in.
SLOW_BUILTINS += ("tiny-random-qwen3.5", "tiny-random-qwen3-vl-moe")
# Qwen2.5-VL runs every Qwen-VL image and clip test too (a twelfth of the quick tier): its press
# path (merged tokens, the qwen2-vl preset) is Qwen2-VL's, so the quick tier keeps Qwen2-VL for
# images and Qwen3-VL for clips; its tests naming it in the body only (pixel limits, ...) stay.
SLOW_BUILTINS += ("tiny-random-qwen2.5-vl",)
# The 50 and 100 MP files written for the peak-memory tests: decoding them takes seconds.
BIG_FILE_FIXTURES = {"big_files"}
# Single heavy tests whose check the quick tier already makes on a lighter case.
HEAVY_TESTS = (
    # runs MGM-HD (a slow built-in) without naming it in its id; the dynamic budget across
    # views and images stays quick on InternVL's tiles and LLaVA-NeXT's views
    "vlm/test_mini_gemini.py::test_dynamic_budget_is_shared_across_views_and_images",
    # the same equivalence at 640 x 480 stays quick (and at 300 x 700 on LLaVA-1.5)
    "vlm/test_vlm_equivalence.py::test_keeping_every_patch_equals_the_unmodified_model[size1-tiny_next_vlm]",
    # a fresh interpreter, as the other tests of its file
    "cli/test_cli_light_parsing.py::test_every_commands_help_does_not_import_transformers",
)
# The methods contract runs every press on every built-in. On the built-ins with many views or
# frames the quick tier keeps PruneSID only: every press's fed count on every built-in stays
# quick in tests/pipeline/test_press_contract.py, and every press's contract on LLaVA-1.5 (CLS
# tower) and Qwen2-VL (merged tokens, no CLS).
MATRIX_FILE = "methods/test_methods_contract.py"
MATRIX_QUICK_PRESS = "prunesid"
MATRIX_HEAVY_BUILTINS = ("tiny-random-next", "tiny-random-mgm", "tiny-random-video-llava", "tiny-random-qwen3-vl")
TESTS = Path(__file__).resolve().parent


def pytest_configure(config):
    # Under pytest-xdist (make test-fast) each worker gets one thread: the workers already
    # fill the cores, and torch's own pool would make each wait on the other.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    for item in items:
        relative = Path(item.fspath).resolve().relative_to(TESTS).as_posix()
        if relative in TIER_FILES:
            item.add_marker(TIER_FILES[relative])
        if BROWSER_FIXTURES & set(item.fixturenames):
            item.add_marker("browser")
        on_slow_builtin = any(name in item.nodeid for name in SLOW_BUILTINS)
        heavy = BIG_FILE_FIXTURES & set(item.fixturenames) or f"{relative}::{item.name}" in HEAVY_TESTS
        heavy = heavy or (relative == MATRIX_FILE and _heavy_matrix_cell(item))
        if relative.startswith(APP_FOLDER + "/") or LAUNCHED_APP_FIXTURES & set(item.fixturenames) or on_slow_builtin or heavy:
            item.add_marker("slow")


def _heavy_matrix_cell(item) -> bool:
    """A press other than the quick one on a built-in with many views or frames."""
    params = getattr(item, "callspec", None)
    if params is None or "model" not in params.params or "name" not in params.params:
        return False
    return params.params["model"] in MATRIX_HEAVY_BUILTINS and params.params["name"] != MATRIX_QUICK_PRESS


@pytest.fixture(scope="session")
def tiny_vlm():
    from prunesid import load_vlm

    return load_vlm("tiny-random")


@pytest.fixture(scope="session")
def tiny_next_vlm():
    from prunesid import load_vlm

    return load_vlm("tiny-random-next")


def scene(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A structured test picture: gradient sky, coloured boxes and a little noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    pixels = np.concatenate([80 + 120 * y, 120 + 80 * y, 200 - 60 * y], axis=2) * np.ones((1, width, 1))
    pixels += rng.normal(0, 6, pixels.shape)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x0, y0, x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 120))], fill=colour)
    return image


def scene_clip(path, frames: int, fps: int, size: tuple[int, int]) -> str:
    """An H.264 clip (PyAV) of ``frames`` scenes (seeds 0, 1, ...) at ``fps``: each frame tells
    which it is; ``size`` (width, height) even."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": "10", "threads": "1"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(scene(*size, seed=i)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture
def picture() -> Image.Image:
    return scene()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


ROOT = TESTS.parent


def app_env(**extra) -> dict:
    """The environment of a launched app: offline (it serves the built-in without probing the
    Hub), no analytics, and no model or address settings inherited from the caller's shell."""
    import os

    inherited = ("PRUNESID_MODEL", "GRADIO_SERVER_NAME", "FORWARDED_ALLOW_IPS")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **extra)
    return env


@contextlib.contextmanager
def launched_app(*args: str, log_path: Path, env: dict | None = None, script: str = "app.py", timeout: float = 240):
    """``python app.py ARGS`` on a free port, as a user starts it; yields (url, process) once
    the page answers, and stops the app on the way out. Its output goes to ``log_path``."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        command = [sys.executable, script, *args, "--port", str(port)]
        server = subprocess.Popen(command, cwd=ROOT, env=env or app_env(), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + timeout
        try:
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"{script} exited with {server.returncode}; see {log_path}:\n{log_path.read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{script} did not answer on {url} within {timeout:.0f} s; see {log_path}")
                    time.sleep(0.5)
            yield url, server
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="session")
def app_url():
    """`python app.py` launched as a user would (offline default model), on a free port."""
    with launched_app(log_path=ROOT / "test-artifacts" / "app-server.log") as (url, _):
        yield url


@pytest.fixture(autouse=True)
def _pillow_refuses_truncated_files():
    """lmms-eval, imported in-process by the evaluation tests, switches Pillow's global
    LOAD_TRUNCATED_IMAGES on; every other test runs with Pillow's default (off)."""
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    yield


def fed_to_language_model(vlm, run):
    """Run ``run()`` and capture the inputs_embeds of the language model's first (prefill)
    call: exactly what the LLM was fed. Returns (embeds, run's result)."""
    captured = []
    hook = vlm.model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True
    )
    try:
        result = run()
    finally:
        hook.remove()
    return captured[0], result
