"""`vllm serve` with the plug-in on 127.0.0.1: an OpenAI-compatible chat request with an image
is billed text + N prompt tokens; the same server, started with --enable-mm-embeds, takes
PruneSID-Dyn embeddings from prunesid.vllm.client whose count differs per image."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from conftest import pattern
from prunesid.vllm import engine_overrides

BUDGET = 32
START_TIMEOUT = 420  # seconds: two vLLM processes import on a shared 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        str(Path(sys.executable).parent / "vllm"), "serve", checkpoint, "--host", "127.0.0.1", "--port", str(port),
        "--hf-overrides", json.dumps(engine_overrides("llava", "prunesid", BUDGET)), "--enable-mm-embeds",
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--max-num-seqs", "4",
        "--served-model-name", "tiny",
    ]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    with open(log, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")
            time.sleep(2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def text_tokens(checkpoint: str, question: str, images: int) -> int:
    """The chat prompt's tokens, less one placeholder per image (what the template renders)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    content = [{"type": "image"}] * images + [{"type": "text", "text": question}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return len(processor.tokenizer.encode(prompt)) - images


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_chat_request_with_an_image_is_billed_text_plus_n(server, checkpoint):
    question = "What is in this picture?"
    body = {
        "model": "tiny", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(pattern((640, 480), 1))}},
            {"type": "text", "text": question},
        ]}],
    }
    answer = post(f"{server}/v1/chat/completions", body)
    assert answer["usage"]["prompt_tokens"] == text_tokens(checkpoint, question, 1) + BUDGET
    assert answer["choices"][0]["message"]["role"] == "assistant"


def test_prunesid_dyn_embeddings_are_served_with_their_own_counts(server, checkpoint):
    from prunesid import PruneSID, load_vlm
    from prunesid.vllm.client import chat_message, compressed_embeddings

    vlm = load_vlm(checkpoint, dtype="float32")
    # A flat image carries little information, a busy one much: PruneSID-Dyn gives them different budgets.
    images = [Image.new("RGB", (336, 336), "teal"), pattern((336, 336), 5)]
    embeds = compressed_embeddings(vlm, images, PruneSID(budget=BUDGET, dynamic=True))
    counts = [int(item.shape[0]) for item in embeds]
    assert counts[0] != counts[1]
    assert all(item.shape[1] == vlm.model.config.text_config.hidden_size for item in embeds)
    question = "What differs?"
    answer = post(f"{server}/v1/chat/completions", {
        "model": "tiny", "max_tokens": 2, "temperature": 0, "messages": [chat_message(question, embeds)],
    })
    assert answer["usage"]["prompt_tokens"] == text_tokens(checkpoint, question, 2) + sum(counts)
