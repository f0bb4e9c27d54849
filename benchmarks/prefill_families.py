"""What PruneSID buys in the LLM prefill of random-weight models shaped like LLaVA-OneVision-7B
and InternVL3-8B, the tiled families whose unmodified prompts are the longest.

The models: each family's tiny built-in (its real geometry: tiles, views, newlines, pixel
shuffle, processor) with the released model's widths put back where the prefill's cost lies:

- ``onevision``: SigLIP-so400m's width (1152, MLP 4304, 16 heads) and Qwen2-7B's LLM (hidden
  3584, MLP 18944, 28 heads with 4 KV heads);
- ``internvl``: InternViT-300M's width (1024, MLP 4096, 16 heads) and Qwen2.5-7B's LLM (the
  same widths as Qwen2-7B).

Only VISION_LAYERS tower layers and ``--layers`` of the LLM's 28 decoder layers are built, so
that it runs on a CPU box: the tower's work is the same with and without a press, and every
decoder layer does the same work per token, so the prefill speedup ratios carry over while
absolute times scale with the layer count. The vocabulary is the built-in's (a few hundred
tokens): only the last position's logits are computed.

The image: 640 x 480 px (OneVision: base view + 2 x 2 tiles + 40 newlines, 2,929 tokens;
InternVL: 4 x 3 tiles + the thumbnail, 13 views of 256, 3,328 tokens). N is per view, so
N = 64 feeds 360 (OneVision, newlines included) and 832 (InternVL). One process: the image is
encoded once; each round times, in turn, the prefill with all tokens and with N = 192 / 128
/ 64 (logits for the last position only) and the compressor (select() on the cached
features, exact and randomized solver). Medians over the rounds.

    python benchmarks/prefill_families.py --family onevision [--layers 2] [--rounds 3]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prefill import measure_rows, picture, print_rows  # noqa: E402
from prunesid.vlm import VLM, wrap  # noqa: E402
from prunesid.family_kit import builtin_directory  # noqa: E402
from prunesid.family_kit.processors import load_processor  # noqa: E402

VISION_LAYERS = 2
QWEN2_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128}
FAMILIES = {
    # family -> (built-in, shaped like, vision widths)
    "onevision": ("tiny-random-llava-onevision", "llava-onevision-qwen2-7b-ov", {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16}),
    "internvl": ("tiny-random-internvl", "InternVL3-8B", {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16}),
}


def build(family: str, layers: int) -> VLM:
    builtin, shaped_like, vision_widths = FAMILIES[family]
    directory = str(builtin_directory(builtin))
    config = AutoConfig.from_pretrained(directory)
    config.text_config.update({**QWEN2_7B, "num_hidden_layers": layers})
    if getattr(config.text_config, "layer_types", None) is not None:
        config.text_config.layer_types = ["full_attention"] * layers
    config.vision_config.update({**vision_widths, "num_hidden_layers": VISION_LAYERS})
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    processor = load_processor(directory, config.model_type)
    return wrap(model, processor, name=f"{shaped_like}-shaped ({VISION_LAYERS} tower layers, {layers} of 28 LLM layers, random)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real models have 28)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    vlm = build(args.family, args.layers)
    build_s = time.perf_counter() - start
    image = picture()
    encoded = vlm.encode(image)
    rows = measure_rows(vlm, image, encoded, args.rounds)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"Prefill on {vlm.name}: 640 x 480 image, {encoded.num_views} views, CPU, {torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"vision: {encoded.vision_ms:.0f} ms once per image; built in {build_s:.0f} s; peak RSS {peak_rss_gb:.1f} GB\n")
    print_rows(rows)
    print(json.dumps({
        "benchmark": "prefill_families", "family": args.family, "llm_layers": args.layers, "vision_layers": VISION_LAYERS,
        "rounds": args.rounds, "threads": torch.get_num_threads(), "views": encoded.num_views,
        "vision_ms": round(encoded.vision_ms, 1), "peak_rss_gb": round(peak_rss_gb, 2), "rows": rows,
    }))


if __name__ == "__main__":
    main()
