"""What PruneSID buys in the LLM prefill of a random-weight model shaped like Qwen2.5-VL-7B.

The model: Qwen2.5-VL-7B's vision tower (32 blocks of width 1280, MLP 3420, 16 heads, 14 px
patches, 112 px attention windows with full attention in blocks 7 / 15 / 23 / 31, 2 x 2 patch
merger into width 3584) and its LLM's widths (hidden 3584, MLP 18944, 28 heads with 4 KV
heads, M-RoPE sections 16 / 24 / 24, vocab 152064, embeddings tied here to save memory) with
only LLM_LAYERS of its 28 decoder layers, so that it runs on a CPU box. Every decoder layer
does the same work per token, so the speedup ratios carry over; absolute times scale with the
layer count (x14 for the real 28 layers, which makes the compressor's share 14 times smaller).

The image: 1008 x 784 px, which the processor keeps as is (multiples of 28 px): 36 x 28 =
1008 merged tokens. The budget N is per 576 merged tokens (SPEC section 9), so N = 64 / 128 /
192 keep N_eff = 112 / 224 / 336 tokens. One process: the image is encoded once; each round
times, in turn, the prefill with all tokens and with each N (a forward over the prompt with
logits for the last position only), the compressor (select() on the cached features, exact
and randomized solver) and the M-RoPE positions of the kept tokens (get_rope_index on the
unpruned ids, then the kept columns). Medians over the rounds (the JSON line also has each
prefill's fastest round, less sensitive to other load on a shared box).

    python benchmarks/prefill_qwen.py [--layers 2] [--rounds 3]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prefill import compressor_ms, prefill_ms  # noqa: E402  (the same timings as the LLaVA rows)
from prunesid import PruneSID  # noqa: E402
from prunesid.vlm import VLM, wrap  # noqa: E402
from prunesid.pipeline import PressedInputs  # noqa: E402
from prunesid.families.qwen_vl.builtins import build_qwen_tokenizer, qwen_chat_template  # noqa: E402
from prunesid.family_kit.processors import without_video_processor  # noqa: E402

BUDGETS = (192, 128, 64)
PROMPT = "What is in the image?"
IMAGE_SIZE = (1008, 784)  # width, height: 36 x 28 merged tokens of 28 px
TARGET_EFFICIENCY, TARGET_SHARE = 0.85, 0.10


def build_model(layers: int) -> VLM:
    tokenizer = build_qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "hidden_act": "silu",
        },
        text_config={
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": layers,
            "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            "bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    # Qwen2.5-VL-7B-Instruct's pixel limits (preprocessor_config.json).
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 12845056})
    processor = without_video_processor(Qwen2_5_VLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=qwen_chat_template("You are a helpful assistant."),
    )
    return wrap(model, processor, name=f"qwen2.5-vl-7b-shaped ({layers} LLM layers, random)")


def picture() -> Image.Image:
    width, height = IMAGE_SIZE
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height)[:, None, None]
    pixels = np.concatenate([90 + 110 * y, 130 + 70 * y, 210 - 70 * y], axis=2) * np.ones((1, width, 1))
    image = Image.fromarray((pixels + rng.normal(0, 5, pixels.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y0 = int(rng.integers(0, width - 120)), int(rng.integers(0, height - 100))
        draw.rectangle([x, y0, x + int(rng.integers(40, 240)), y0 + int(rng.integers(40, 180))], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


@torch.inference_mode()
def positions_ms(vlm: VLM, encoded, prepared: PressedInputs) -> float:
    start = time.perf_counter()
    vlm.family.positions(prepared.input_ids, prepared.runs, [encoded])
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real model has 28)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    vlm = build_model(args.layers)
    build_s = time.perf_counter() - start
    image = picture()
    encoded = vlm.encode(image)
    tokens = encoded.features.shape[1]

    presses = {"all": None, **{budget: PruneSID(budget=budget) for budget in BUDGETS}}
    prepared = {name: vlm.prepare(image, PROMPT, press) for name, press in presses.items()}
    for name in presses:  # warm-up
        prefill_ms(vlm, prepared[name])
    times = {name: [] for name in presses}
    select_times = {(budget, solver): [] for budget in BUDGETS for solver in ("exact", "randomized")}
    position_times = {budget: [] for budget in BUDGETS}
    for _ in range(args.rounds):
        for name in presses:
            times[name].append(prefill_ms(vlm, prepared[name]))
        for budget, solver in select_times:
            select_times[(budget, solver)].append(compressor_ms(vlm, encoded, budget, solver))
        for budget in BUDGETS:
            position_times[budget].append(positions_ms(vlm, encoded, prepared[budget]))

    full_length = prepared["all"].input_ids.shape[1]
    full_ms = statistics.median(times["all"])
    rows = [{"budget": None, "visual_tokens": tokens, "sequence": full_length, "prefill_ms": round(full_ms, 1),
             "prefill_min_ms": round(min(times["all"]), 1), "speedup": 1.0, "ideal": 1.0, "efficiency": 1.0}]
    for budget in BUDGETS:
        length = prepared[budget].input_ids.shape[1]
        ms = statistics.median(times[budget])
        speedup, ideal = full_ms / ms, full_length / length
        exact = statistics.median(select_times[(budget, "exact")])
        randomized = statistics.median(select_times[(budget, "randomized")])
        rows.append({
            "budget": budget, "visual_tokens": prepared[budget].visual_tokens[0], "sequence": length,
            "prefill_ms": round(ms, 1), "prefill_min_ms": round(min(times[budget]), 1),
            "speedup": round(speedup, 2), "ideal": round(ideal, 2), "efficiency": round(speedup / ideal, 3),
            "efficiency_of_minima": round(min(times["all"]) / min(times[budget]) / ideal, 3),
            "select_exact_ms": round(exact, 1), "select_exact_share": round(exact / ms, 3),
            "select_randomized_ms": round(randomized, 1), "select_randomized_share": round(randomized / ms, 3),
            "positions_ms": round(statistics.median(position_times[budget]), 2),
        })
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2

    print(f"Prefill on a random Qwen2.5-VL-7B-shaped model: its vision tower + {args.layers} of 28 LLM layers "
          f"(width 3584), CPU, {torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"image {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]} px: {tokens} merged tokens; vision tower {encoded.vision_ms:.0f} ms once; "
          f"model built in {build_s:.0f} s; peak RSS {peak_rss_gb:.1f} GB\n")
    print("| N | N_eff (visual tokens) | sequence | prefill ms | speedup | ideal | speedup / ideal | select exact ms (% of prefill) | select randomized ms (%) | positions ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        extra = (
            f"{row['select_exact_ms']:.1f} ({100 * row['select_exact_share']:.1f}%) | "
            f"{row['select_randomized_ms']:.1f} ({100 * row['select_randomized_share']:.1f}%) | {row['positions_ms']:.1f}"
            if row["budget"] else "— | — | —"
        )
        print(f"| {row['budget'] or 'all'} | {row['visual_tokens']} | {row['sequence']} | {row['prefill_ms']:.0f} | {row['speedup']:.2f}x | "
              f"{row['ideal']:.2f}x | {row['efficiency']:.2f} | {extra} |")
    at64 = rows[-1]
    print(f"\nAt N = 64: speedup {at64['efficiency']:.2f} x ideal (target >= {TARGET_EFFICIENCY}: "
          f"{'met' if at64['efficiency'] >= TARGET_EFFICIENCY else 'MISSED'}); compressor {at64['select_exact_share']:.1%} of the "
          f"compressed prefill exact ({'met' if at64['select_exact_share'] <= TARGET_SHARE else 'MISSED'} <= {TARGET_SHARE:.0%}), "
          f"{at64['select_randomized_share']:.1%} randomized")
    print(json.dumps({
        "benchmark": "prefill_qwen", "model": "qwen2.5-vl-7b-shaped", "llm_layers": args.layers, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "image_size": list(IMAGE_SIZE), "merged_tokens": tokens,
        "vision_ms": round(encoded.vision_ms, 1), "build_s": round(build_s, 1), "peak_rss_gb": round(peak_rss_gb, 2), "rows": rows,
    }))


if __name__ == "__main__":
    main()
