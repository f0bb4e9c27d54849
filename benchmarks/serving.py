"""vLLM serving with and without the plug-in: requests/s, prompt tokens, time to first token.

One fixed set of requests (REQUESTS chat prompts, one image each, sizes varying) runs against
two engines on the same checkpoint: vLLM's own model class (every visual token: 576 per image
for LLaVA-1.5, the whole merged-token grid for Qwen2.5-VL) and the plug-in's (``--family``,
``--method``, ``--budget``). For each engine:

- prompt tokens: summed over the requests, as the engine counted them;
- time to first token: each request alone with one output token (prefill + first decode),
  the median over the requests;
- requests/s: every request submitted at once, ``--max-tokens`` output tokens each.

Run in vLLM's environment (``make setup-vllm``)::

    .venv-vllm/bin/python benchmarks/serving.py [--family llava|qwen2_5_vl] [--checkpoint DIR] [--budget 64] [--method prunesid]

Both Qwen2.5-VL engines run without the prefix cache (the plug-in's Qwen classes need it off);
the plug-in's is started with ``video_pruning_rate`` > 0, its switch (docs/vllm.md).

Without ``--checkpoint`` it serves the family's tiny random built-in of the tests (LLaVA-1.5:
336 px, 576 patches, widths of 64; Qwen2.5-VL: 14 px patches, widths of 64): on it, compression shortens the prompt as on the 7B model, but a
layer of width 64 costs almost nothing per token, so the times are dominated by fixed
per-request work (processing, scheduling, the tower) and understate what the 7B model gains.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests_vllm"))

REQUESTS = 8
QUESTIONS = ["What is in this picture?", "Describe the colours.", "Is there text?", "Count the shapes."]
SIZES = [(640, 480), (300, 500), (336, 336), (1024, 768)]


def standin_if_needed() -> None:
    """vLLM's LLaVA module imports a transformers module that needs torchvision; where
    torchvision is missing (vLLM's CPU environment here), use the tests' stand-in."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    standin = ROOT / "tests_vllm" / "standin"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(standin), os.environ.get("PYTHONPATH")]))
    spec = importlib.util.spec_from_file_location("prunesid_vllm_standin", standin / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


# Per family: the tests' built-in, the prompt around one image, what both engines share and
# what the plug-in's engine adds.
FAMILIES = {
    "llava": ("tiny-random", "USER: <image>\n{} ASSISTANT:", {}, {}),
    "qwen2_5_vl": (
        "tiny-random-qwen2.5-vl",
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n",
        {"enable_prefix_caching": False}, {"video_pruning_rate": 0.5},
    ),
}


def library_processor_if_needed(family: str) -> None:
    """vLLM's own Qwen2.5-VL class (the unmodified engine) builds transformers' processor,
    whose video processor needs torchvision; where it is missing, that processor is built the
    library's way (the same image processing; the plug-in's classes do this themselves)."""
    if family != "qwen2_5_vl" or importlib.util.find_spec("torchvision") is not None:
        return
    import transformers

    from prunesid.family_kit.processors import load_processor

    transformers.Qwen2_5_VLProcessor.from_pretrained = classmethod(lambda cls, path, *args, **kwargs: load_processor(str(path), family))


def requests(template: str = FAMILIES["llava"][1]):
    from conftest import pattern

    return [
        {"prompt": template.format(QUESTIONS[i % len(QUESTIONS)]), "multi_modal_data": {"image": pattern(SIZES[i % len(SIZES)], i)}}
        for i in range(REQUESTS)
    ]


def measure(checkpoint: str, overrides: dict | None, max_tokens: int, family: str = "llava") -> dict:
    import gc

    from vllm import LLM, SamplingParams

    _, template, shared, pressed = FAMILIES[family]
    llm = LLM(
        model=checkpoint, dtype="float32", max_model_len=2048, enforce_eager=True, max_num_seqs=REQUESTS,
        limit_mm_per_prompt={"image": 1}, seed=0, hf_overrides=overrides, **shared, **(pressed if overrides else {}),
    )
    batch = requests(template)
    first = SamplingParams(max_tokens=1, temperature=0.0)
    llm.generate(batch[:1], first, use_tqdm=False)  # warm-up
    ttft, prompt_tokens = [], 0
    for request in batch:
        start = time.perf_counter()
        [output] = llm.generate([request], first, use_tqdm=False)
        ttft.append(time.perf_counter() - start)
        prompt_tokens += len(output.prompt_token_ids)
    start = time.perf_counter()
    llm.generate(batch, SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True), use_tqdm=False)
    elapsed = time.perf_counter() - start
    del llm
    gc.collect()
    return {"requests_per_s": len(batch) / elapsed, "prompt_tokens": prompt_tokens, "ttft_ms": statistics.median(ttft) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="llava")
    parser.add_argument("--checkpoint", help="a checkpoint directory of the family (default: the tests' tiny random one)")
    parser.add_argument("--method", default="prunesid")
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    standin_if_needed()
    library_processor_if_needed(args.family)
    from prunesid.vllm import engine_overrides
    from prunesid.vllm.checkpoint import engine_checkpoint

    checkpoint = args.checkpoint or str(engine_checkpoint(FAMILIES[args.family][0]))
    full = measure(checkpoint, None, args.max_tokens, args.family)
    pressed = measure(checkpoint, engine_overrides(args.family, args.method, args.budget), args.max_tokens, args.family)
    rows = [("requests/s", "requests_per_s", "{:.2f}"), ("prompt tokens", "prompt_tokens", "{:d}"), ("time to first token (ms)", "ttft_ms", "{:.1f}")]
    print(f"{args.family}: {REQUESTS} requests, one image each; {args.method} N={args.budget} against all visual tokens")
    print(f"{'':28s}{'unmodified':>12s}{'compressed':>12s}{'ratio':>8s}")
    for label, key, shape in rows:
        print(f"{label:28s}{shape.format(full[key]):>12s}{shape.format(pressed[key]):>12s}{pressed[key] / full[key]:>8.2f}")
    print(json.dumps({"family": args.family, "method": args.method, "budget": args.budget, "unmodified": full, "compressed": pressed,
                      "ratios": {key: pressed[key] / full[key] for _, key, _ in rows}}))


if __name__ == "__main__":
    main()
