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


def clip_url(frames, fps: float) -> str:
    """An MP4 (mp4v) of ``frames`` as a data URL, what a chat client sends as video_url."""
    import base64
    import tempfile
    from pathlib import Path

    import cv2

    path = Path(tempfile.mkdtemp(prefix="prunesid-clip-")) / "clip.mp4"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def test_a_chat_request_with_a_clip_is_billed_text_plus_n_eff_per_group(qwen_server):
    """A 4-frame clip (fewer frames than vLLM samples, so all 4 are read): 2 temporal groups,
    N_eff of each group's merged tokens."""
    import numpy as np

    from prunesid import load_vlm
    from prunesid.video import Video
    from prunesid.vllm.checkpoint import engine_checkpoint

    frames = [np.asarray(pattern((320, 240), seed)) for seed in range(4)]
    question = "What happens?"
    vlm = load_vlm(str(engine_checkpoint("tiny-random-qwen2.5-vl")), dtype="float32")
    content = [{"type": "video"}, {"type": "text", "text": question}]
    prompt = vlm.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    text = len(vlm.processor.tokenizer.encode(prompt, add_special_tokens=False)) - 1
    per_group = vlm.encode(Video.from_frames(frames, fps=2.0)).features.shape[1]
    fed = 2 * min(per_group, max(round(per_group * BUDGET / 576), 16))  # SPEC section 9, written out
    body = {
        "model": "tiny", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip_url(frames, 2.0)}}, {"type": "text", "text": question}]}],
    }
    answer = post(f"{qwen_server}/v1/chat/completions", body, "qwen_server")
    assert answer["usage"]["prompt_tokens"] == text + fed
