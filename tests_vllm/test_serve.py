"""`vllm serve` with the plug-in on 127.0.0.1: an OpenAI-compatible chat request with an image
is billed text + N prompt tokens; the same server, started with --enable-mm-embeds, takes
PruneSID-Dyn embeddings from prunesid.vllm.client whose count differs per image."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

from PIL import Image

from conftest import SERVE_BUDGET as BUDGET
from conftest import pattern, server_log


def post(url: str, body: dict, server: str = "server") -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{url} answered {error.code}: {error.read().decode()[:2000]}\n{server_log(server)}") from None


def text_tokens(checkpoint: str, question: str, images: int) -> int:
    """The chat prompt's tokens, less one placeholder per image: the template's text, tokenized
    as vLLM's chat endpoint does (add_special_tokens false: a template brings its own)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    content = [{"type": "image"}] * images + [{"type": "text", "text": question}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return len(processor.tokenizer.encode(prompt, add_special_tokens=False)) - images


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
