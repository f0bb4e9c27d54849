"""What PruneSID buys in the LLM prefill, on a random-weight model shaped like LLaVA-1.5-7B.

The model: a CLIP ViT-L/14-336 tower (24 layers, width 1024; feature layer -2) and a Llama
LLM with LLaVA-1.5-7B's widths (hidden 4096, MLP 11008, 32 heads, vocab 32064) but only
LLM_LAYERS decoder layers, so that it fits and runs on a CPU box; every layer of the real
model does the same work per token, so the speedup ratios carry over while absolute times
scale with the layer count (x16 for the real 32 layers, which also makes the compressor's
share 16 times smaller than measured here).

One run, one process: the image is encoded once; then each round times, in turn, the
prefill with all 576 visual tokens and with budgets 192 / 128 / 64 (a forward over the
prompt with logits for the last position only), and the compressor itself (select() on the
cached features, exact and randomized solver). Medians over the rounds.

    python benchmarks/prefill.py [--layers 2] [--rounds 3]

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
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunesid import PruneSID  # noqa: E402
from prunesid.vlm import VLM, wrap  # noqa: E402
from prunesid.pipeline import PressedInputs  # noqa: E402
from prunesid.families.llava.builtins import CHAT_TEMPLATE, build_tokenizer  # noqa: E402

BUDGETS = (192, 128, 64)
PROMPT = "What is in the image?"  # byte-level tokenizer: 1 token per character, ~45 text tokens in all
TARGET_EFFICIENCY, TARGET_SHARE = 0.85, 0.10


def build_model(layers: int) -> VLM:
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
        num_hidden_layers=24, num_attention_heads=16, projection_dim=768,
    )
    text = LlamaConfig(
        vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=576,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    return wrap(model, processor, name=f"llava-1.5-7b-shaped ({layers} LLM layers, random)")


def picture() -> Image.Image:
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, 480)[:, None, None]
    pixels = np.concatenate([90 + 110 * y, 130 + 70 * y, 210 - 70 * y], axis=2) * np.ones((1, 640, 1))
    image = Image.fromarray((pixels + rng.normal(0, 5, pixels.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y0 = int(rng.integers(0, 560)), int(rng.integers(0, 400))
        draw.rectangle([x, y0, x + int(rng.integers(30, 150)), y0 + int(rng.integers(30, 110))], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


@torch.inference_mode()
def prefill_ms(vlm: VLM, prepared: PressedInputs) -> float:
    start = time.perf_counter()
    vlm.model(
        input_ids=prepared.input_ids,
        attention_mask=torch.ones_like(prepared.input_ids),
        logits_to_keep=1,
        **prepared.model_inputs,
    )
    return (time.perf_counter() - start) * 1000


def compressor_ms(vlm: VLM, encoded, budget: int, solver: str) -> float:
    press = PruneSID(budget=budget, solver=solver)
    start = time.perf_counter()
    press.compress(vlm.vision_tokens([encoded]))
    return (time.perf_counter() - start) * 1000


def measure_rows(vlm, image, encoded, rounds: int, budgets=BUDGETS) -> list[dict]:
    """Interleaved rounds of the prefill with every visual token and with N = each budget (per
    view), and of the compressor at each budget; one row per setting, medians."""
    presses = {"all": None, **{budget: PruneSID(budget=budget) for budget in budgets}}
    prepared = {name: vlm.prepare(image, PROMPT, press) for name, press in presses.items()}
    for name in presses:  # warm-up
        prefill_ms(vlm, prepared[name])
    times = {name: [] for name in presses}
    select_times = {(budget, solver): [] for budget in budgets for solver in ("exact", "randomized")}
    for _ in range(rounds):
        for name in presses:
            times[name].append(prefill_ms(vlm, prepared[name]))
        for budget, solver in select_times:
            select_times[(budget, solver)].append(compressor_ms(vlm, encoded, budget, solver))

    full_length, full_ms = prepared["all"].input_ids.shape[1], statistics.median(times["all"])
    # What the LLM receives (e.g. OneVision: the unpadded grid and its newlines, not every view slot).
    rows = [{"visual_tokens": sum(prepared["all"].visual_tokens), "sequence": full_length, "prefill_ms": round(full_ms, 1),
             "speedup": 1.0, "ideal": 1.0, "efficiency": 1.0}]
    for budget in budgets:
        length, ms = prepared[budget].input_ids.shape[1], statistics.median(times[budget])
        speedup, ideal = full_ms / ms, full_length / length
        exact = statistics.median(select_times[(budget, "exact")])
        randomized = statistics.median(select_times[(budget, "randomized")])
        rows.append({
            "visual_tokens": sum(prepared[budget].visual_tokens), "sequence": length, "prefill_ms": round(ms, 1),
            "speedup": round(speedup, 2), "ideal": round(ideal, 2), "efficiency": round(speedup / ideal, 3),
            "select_exact_ms": round(exact, 1), "select_exact_share": round(exact / ms, 3),
            "select_randomized_ms": round(randomized, 1), "select_randomized_share": round(randomized / ms, 3),
        })
    return rows


def print_rows(rows: list[dict]) -> None:
    print("| visual tokens | sequence | prefill ms | speedup | ideal | speedup / ideal | select exact ms (% of prefill) | select randomized ms (%) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        select_cells = (
            f"{row['select_exact_ms']:.1f} ({100 * row['select_exact_share']:.1f}%) | {row['select_randomized_ms']:.1f} ({100 * row['select_randomized_share']:.1f}%)"
            if "select_exact_ms" in row else "— | —"
        )
        print(f"| {row['visual_tokens']} | {row['sequence']} | {row['prefill_ms']:.0f} | {row['speedup']:.2f}x | {row['ideal']:.2f}x | {row['efficiency']:.2f} | {select_cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real model has 32)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    start = time.perf_counter()
    vlm = build_model(args.layers)
    build_s = time.perf_counter() - start
    image = picture()
    encoded = vlm.encode(image)
    vision_ms = encoded.vision_ms

    rows = measure_rows(vlm, image, encoded, args.rounds)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2

    print(f"Prefill on a random LLaVA-1.5-7B-shaped model: ViT-L/14-336 tower + {args.layers} of 32 LLM layers "
          f"(width 4096), CPU, {torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"vision tower: {vision_ms:.0f} ms once per image; model built in {build_s:.0f} s; peak RSS {peak_rss_gb:.1f} GB\n")
    print_rows(rows)
    at64 = rows[-1]
    print(f"\nTargets at 64 tokens: speedup >= {TARGET_EFFICIENCY} x ideal: {at64['efficiency']:.2f} "
          f"({'met' if at64['efficiency'] >= TARGET_EFFICIENCY else 'MISSED'}); compressor <= {TARGET_SHARE:.0%} of the "
          f"compressed prefill: {at64['select_exact_share']:.1%} exact ({'met' if at64['select_exact_share'] <= TARGET_SHARE else 'MISSED'}), "
          f"{at64['select_randomized_share']:.1%} randomized")
    print(json.dumps({
        "benchmark": "prefill", "llm_layers": args.layers, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "vision_ms": round(vision_ms, 1), "peak_rss_gb": round(peak_rss_gb, 2), "rows": rows,
    }))


if __name__ == "__main__":
    main()
