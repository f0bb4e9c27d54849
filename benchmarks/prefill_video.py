"""What per-frame PruneSID buys in the LLM prefill, on a random-weight model shaped like
Video-LLaVA-7B.

The model: two CLIP ViT-L/14 towers at 224 px (video and image; 24 layers, width 1024,
feature layer -2) and a Llama LLM with Video-LLaVA-7B's widths (hidden 4096, MLP 11008,
32 heads, vocab 32064) but only LLM_LAYERS decoder layers, so that it fits and runs on a
CPU box; every layer of the real model does the same work per token, so the speedup ratios
carry over while absolute times scale with the layer count (x16 for the real 32 layers,
which also makes the compressor's share 16 times smaller than measured here).

The clip: assets/clip.mp4, 8 frames sampled uniformly. Unmodified, the LLM receives
8 x (CLS + 256 patches) = 2,056 visual tokens; PruneSID keeps N per frame (CLS included):
8 x 17 = 136 as in the paper, plus 8 x 34 and 8 x 64, and 17 per frame with the dynamic
budget (136 in all, shared by phi).

One run, one process: the clip is encoded once; then each round times, in turn, the prefill
(a forward over the prompt with logits for the last position only) for every setting and
the selection itself (the press on the cached features of all 8 frames, exact and
randomized solver). Medians over the rounds.

    python benchmarks/prefill_video.py [--layers 2] [--rounds 3]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor, VideoLlavaProcessor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prefill import prefill_ms  # noqa: E402  (the same timing as the LLaVA rows)
from prunesid import PruneSID  # noqa: E402
from prunesid.video import load_video  # noqa: E402
from prunesid.vlm import VLM, wrap  # noqa: E402
from prunesid.families.llava.builtins import build_tokenizer  # noqa: E402
from prunesid.families.video_llava.builtins import CHAT_TEMPLATE  # noqa: E402
from prunesid.family_kit.processors import without_video_processor  # noqa: E402

FRAMES, PER_FRAME_BUDGETS = 8, (64, 34, 17)
PROMPT = "What happens in the video?"
CLIP = ROOT / "assets" / "clip.mp4"


def build_model(layers: int) -> VLM:
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<video>"]})
    vision = CLIPVisionConfig(
        image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
        num_hidden_layers=24, num_attention_heads=16, projection_dim=768,
    )
    text = LlamaConfig(
        vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = VideoLlavaConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=256, video_seq_length=FRAMES * 257,
    )
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = without_video_processor(VideoLlavaProcessor)(
        image_processor=VideoLlavaImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    return wrap(model, processor, name=f"video-llava-7b-shaped ({layers} LLM layers, random)")


def selection_ms(vlm: VLM, encoded, press: PruneSID) -> float:
    tokens = vlm.vision_tokens([encoded])
    start = time.perf_counter()
    press.compress(tokens)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real model has 32)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    vlm = build_model(args.layers)
    build_s = time.perf_counter() - start
    clip = load_video(CLIP, num_frames=FRAMES)
    encoded = vlm.encode(clip)
    vision_ms = encoded.vision_ms

    presses = {"all": None}
    presses.update({f"{n} per frame": PruneSID(budget=n) for n in PER_FRAME_BUDGETS})
    presses["17 per frame, dynamic"] = PruneSID(budget=17, dynamic=True)
    prepared = {name: vlm.prepare(clip, PROMPT, press) for name, press in presses.items()}
    for name in presses:  # warm-up
        prefill_ms(vlm, prepared[name])
        if presses[name] is not None:
            selection_ms(vlm, encoded, presses[name])
    times = {name: [] for name in presses}
    select_times = {(name, solver): [] for name, press in presses.items() if press is not None for solver in ("exact", "randomized")}
    for _ in range(args.rounds):
        for name in presses:
            times[name].append(prefill_ms(vlm, prepared[name]))
        for name, solver in select_times:
            press = PruneSID(budget=presses[name].budget, dynamic=presses[name].dynamic, solver=solver)
            select_times[(name, solver)].append(selection_ms(vlm, encoded, press))

    full_length = prepared["all"].input_ids.shape[1]
    full_ms = statistics.median(times["all"])
    rows = []
    for name in presses:
        length = prepared[name].input_ids.shape[1]
        ms = statistics.median(times[name])
        speedup, ideal = full_ms / ms, full_length / length
        row = {
            "setting": name, "visual_tokens": prepared[name].visual_tokens[0], "sequence": length,
            "prefill_ms": round(ms, 1), "speedup": round(speedup, 2), "ideal": round(ideal, 2), "efficiency": round(speedup / ideal, 3),
        }
        if presses[name] is not None:
            exact = statistics.median(select_times[(name, "exact")])
            randomized = statistics.median(select_times[(name, "randomized")])
            budgets = prepared[name].compressions[0].budget.tolist()
            row.update({
                "frame_budgets": budgets,
                "select_exact_ms": round(exact, 1), "select_exact_share": round(exact / ms, 3),
                "select_randomized_ms": round(randomized, 1), "select_randomized_share": round(randomized / ms, 3),
            })
        rows.append(row)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    load = (round(load_before, 1), round(os.getloadavg()[0], 1))  # other work on the box skews every time

    print(f"Prefill on a random Video-LLaVA-7B-shaped model: 2 x ViT-L/14-224 towers + {args.layers} of 32 LLM layers "
          f"(width 4096), CPU, {torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"clip: {CLIP.name}, {FRAMES} frames; video tower {vision_ms:.0f} ms once per clip; model built in {build_s:.0f} s; "
          f"peak RSS {peak_rss_gb:.1f} GB; load average {load[0]} at the start, {load[1]} at the end\n")
    print("| setting | visual tokens | sequence | prefill ms | speedup | ideal | speedup / ideal | select exact ms (% of prefill) | select randomized ms (%) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        select_cells = (
            f"{row['select_exact_ms']:.1f} ({100 * row['select_exact_share']:.1f}%) | "
            f"{row['select_randomized_ms']:.1f} ({100 * row['select_randomized_share']:.1f}%)"
            if "select_exact_ms" in row else "— | —"
        )
        print(f"| {row['setting']} | {row['visual_tokens']} | {row['sequence']} | {row['prefill_ms']:.0f} | {row['speedup']:.2f}x | "
              f"{row['ideal']:.2f}x | {row['efficiency']:.2f} | {select_cells} |")
    dynamic = rows[-1]
    print(f"\ndynamic: N' per frame {dynamic['frame_budgets']} (sum {sum(dynamic['frame_budgets'])})")
    print(json.dumps({
        "benchmark": "prefill_video", "llm_layers": args.layers, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "frames": FRAMES, "vision_ms": round(vision_ms, 1), "peak_rss_gb": round(peak_rss_gb, 2), "load_average": load, "rows": rows,
    }))


if __name__ == "__main__":
    main()
