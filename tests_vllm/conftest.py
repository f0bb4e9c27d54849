"""The vLLM plug-in's tests: run only by `make test-vllm`, in vLLM's own environment (.venv-vllm).

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0: one vLLM import, not
two); `vllm serve` runs as a child process. Both get the torchvision stand-in
(standin/sitecustomize.py) and a small CPU KV cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

STANDIN = Path(__file__).parent / "standin"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_spec = importlib.util.spec_from_file_location("prunesid_vllm_standin", STANDIN / "sitecustomize.py")
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # this process too

# What every engine of the tests shares: float32 as the transformers path, no compilation.
ENGINE_ARGS = dict(dtype="float32", max_model_len=2048, enforce_eager=True, max_num_seqs=4, limit_mm_per_prompt={"image": 2}, seed=0)


SERVE_BUDGET = 32
SERVE_START_TIMEOUT = 600  # seconds: two vLLM processes import on a shared 2-core machine
# The servers the tests start, by fixture name: (built-in, plug-in family, extra arguments).
SERVERS = {
    "server": ("tiny-random", "llava", ["--enable-mm-embeds"]),
    "qwen_server": ("tiny-random-qwen2.5-vl", "qwen2_5_vl", ["--video-pruning-rate", "0.5", "--no-enable-prefix-caching"]),
}
_servers: dict = {}


@pytest.fixture(scope="session")
def checkpoint() -> str:
    from prunesid.vllm.checkpoint import engine_checkpoint

    return str(engine_checkpoint("tiny-random"))


def pytest_collection_modifyitems(session, config, items):
    """Start each `vllm serve` as soon as a collected test needs it: it boots (mostly imports,
    one core) while the in-process engine tests run."""
    for name in SERVERS:
        if any(name in getattr(item, "fixturenames", ()) for item in items):
            _start_server(name)


def _start_server(name: str) -> None:
    from prunesid.vllm import engine_overrides
    from prunesid.vllm.checkpoint import engine_checkpoint

    builtin, family, extra = SERVERS[name]
    checkpoint = engine_checkpoint(builtin)
    template = checkpoint / "chat_template.json"
    if family.startswith("qwen") and template.is_file():
        # The API server reads the chat template from transformers' processor, which it cannot
        # build without torchvision here (Qwen-VL); the checkpoint's template, given by hand.
        written = Path(tempfile.mkdtemp(prefix="prunesid-vllm-template-")) / "chat_template.jinja"
        written.write_text(json.loads(template.read_text())["chat_template"])
        extra = [*extra, "--chat-template", str(written)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(tempfile.mkdtemp(prefix="prunesid-vllm-serve-")) / "serve.log"
    command = [
        str(Path(sys.executable).parent / "vllm"), "serve", str(checkpoint),
        "--host", "127.0.0.1", "--port", str(port),
        "--hf-overrides", json.dumps(engine_overrides(family, "prunesid", SERVE_BUDGET)), *extra,
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--max-num-seqs", "4", "--served-model-name", "tiny",
    ]
    with open(log, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    _servers[name] = dict(process=process, log=log, base=f"http://127.0.0.1:{port}", started=time.monotonic())


def server_log(name: str = "server") -> str:
    return _servers[name]["log"].read_text()[-6000:] if name in _servers else ""


def _serving(name: str):
    if name not in _servers:
        _start_server(name)
    process, base = _servers[name]["process"], _servers[name]["base"]
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{server_log(name)}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - _servers[name]["started"] > SERVE_START_TIMEOUT:
                pytest.fail(f"vllm serve did not answer within {SERVE_START_TIMEOUT} s:\n{server_log(name)}")
            time.sleep(2)
        yield base
    finally:
        _stop_server(name)


@pytest.fixture(scope="session")
def server():
    """The base URL of `vllm serve` with the plug-in (PruneSID, N = SERVE_BUDGET) and
    --enable-mm-embeds, on 127.0.0.1."""
    yield from _serving("server")


@pytest.fixture(scope="session")
def qwen_server():
    """The base URL of `vllm serve` of the tiny Qwen2.5-VL with the plug-in (PruneSID, N =
    SERVE_BUDGET), its pruning switch and no prefix cache, on 127.0.0.1."""
    yield from _serving("qwen_server")


def _stop_server(name: str) -> None:
    process = _servers.get(name, {}).get("process")
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pytest_sessionfinish(session, exitstatus):
    for name in list(_servers):
        _stop_server(name)  # also when the tests that needed it were deselected or never ran


def pattern(size: tuple[int, int], seed: int) -> Image.Image:
    """An image with structure (a press has something to choose), the same on every run."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([(xs * (seed + 1)) % 256, (ys * 3) % 256, ((xs + ys) // 4) % 256], axis=-1)
    noise = rng.integers(0, 60, size=(height, width, 3))
    return Image.fromarray(((base + noise) % 256).astype("uint8"), "RGB")
