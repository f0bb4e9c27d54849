"""`vllm serve` of the tiny Qwen2.5-VL with the plug-in (--video-pruning-rate, no prefix cache)
on 127.0.0.1: an OpenAI-compatible chat request with an image is billed text + the library's
fed count, N_eff merged tokens."""

from __future__ import annotations

from conftest import SERVE_BUDGET as BUDGET
from conftest import pattern
from test_serve import data_url, post


def test_a_chat_request_with_an_image_is_billed_text_plus_n_eff(qwen_server):
    from prunesid import load_vlm
    from prunesid.methods.registry import build_press
    from prunesid.vllm.checkpoint import engine_checkpoint

    image, question = pattern((640, 480), 1), "What is in this picture?"
    vlm = load_vlm(str(engine_checkpoint("tiny-random-qwen2.5-vl")), dtype="float32")
    content = [{"type": "image"}, {"type": "text", "text": question}]
    prompt = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    text = len(vlm.processor.tokenizer.encode(prompt, add_special_tokens=False)) - 1  # less the one placeholder
    fed = vlm.fed_tokens(image.size, build_press("prunesid", {"budget": BUDGET}))
    assert 16 < fed < vlm.fed_tokens(image.size, None)
    body = {
        "model": "tiny", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}}, {"type": "text", "text": question}]}],
    }
    answer = post(f"{qwen_server}/v1/chat/completions", body, "qwen_server")
    assert answer["usage"]["prompt_tokens"] == text + fed
    assert answer["choices"][0]["message"]["role"] == "assistant"
