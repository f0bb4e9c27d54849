"""What PruneSID buys in the LLM prefill of a clip on a random-weight model shaped like Qwen2.5-VL-7B.

The model is benchmarks/prefill_qwen.py's (Qwen2.5-VL-7B's vision tower and LLM widths, only
``--layers`` of its 28 decoder layers; ratios carry over, absolute times scale with the layer
count). The clip: ``--frames`` frames of 448 x 336 px (multiples of 28, kept as they are by
the model's pixel limits), so ``frames / 2`` temporal groups of 16 x 12 = 192 merged tokens.
Each group is a view: at N per 576 merged tokens each keeps N_eff = max(round(192 N / 576), 16)
(N = 64: 21), at its unpruned (t, h, w) M-RoPE positions. The clip is encoded once; each
round times the prefill (a forward over the prompt, logits for the last position only) with
all tokens and with each N. Medians over the rounds.

    python benchmarks/prefill_qwen_video.py [--layers 2] [--frames 8] [--rounds 3]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prefill import prefill_ms  # noqa: E402  (the same timing as the image rows)
from benchmarks.prefill_qwen import build_model, picture  # noqa: E402
from prunesid import PruneSID  # noqa: E402
from prunesid.video import Video  # noqa: E402

BUDGETS = (128, 64)
PROMPT = "What happens in the clip?"
FRAME_SIZE = (448, 336)


def clip(frames: int) -> Video:
    """A camera panning over benchmarks/prefill_qwen.py's picture, 2 frames a second."""
    scene = picture()
    width, height = FRAME_SIZE
    step = (scene.width - width) // max(frames - 1, 1)
    return Video.from_frames([scene.crop((i * step, 100, i * step + width, 100 + height)) for i in range(frames)], fps=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real model has 28)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    vlm = build_model(args.layers)
    build_s = time.perf_counter() - start
    video = clip(args.frames)
    encoded = vlm.encode(video)
    groups, per_group = encoded.features.shape[:2]

    presses = {"all": None, **{budget: PruneSID(budget=budget) for budget in BUDGETS}}
    prepared = {name: vlm.prepare(video, PROMPT, press) for name, press in presses.items()}
    for name in presses:  # warm-up
        prefill_ms(vlm, prepared[name])
    times = {name: [] for name in presses}
    for _ in range(args.rounds):
        for name in presses:
            with torch.inference_mode():
                times[name].append(prefill_ms(vlm, prepared[name]))

    full_length = prepared["all"].input_ids.shape[1]
    full_ms = statistics.median(times["all"])
    rows = [{"budget": None, "visual_tokens": groups * per_group, "sequence": full_length, "prefill_ms": round(full_ms, 1),
             "speedup": 1.0, "ideal": 1.0, "efficiency": 1.0}]
    for budget in BUDGETS:
        length = prepared[budget].input_ids.shape[1]
        ms = statistics.median(times[budget])
        speedup, ideal = full_ms / ms, full_length / length
        per_view = [int(k.numel()) for k in prepared[budget].compressions[0].indices]
        rows.append({
            "budget": budget, "per_group": per_view[0], "visual_tokens": prepared[budget].visual_tokens[0], "sequence": length,
            "prefill_ms": round(ms, 1), "speedup": round(speedup, 2), "ideal": round(ideal, 2), "efficiency": round(speedup / ideal, 3),
        })

    print(f"Video prefill on a random Qwen2.5-VL-7B-shaped model: its vision tower + {args.layers} of 28 LLM layers, CPU, "
          f"{torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"clip: {args.frames} frames of {FRAME_SIZE[0]} x {FRAME_SIZE[1]} px = {groups} temporal groups x {per_group} merged tokens; "
          f"vision tower {encoded.vision_ms:.0f} ms once; model built in {build_s:.0f} s\n")
    print("| N per 576 | kept per group | visual tokens | sequence | prefill ms | speedup | ideal | speedup / ideal |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['budget'] or 'all'} | {row.get('per_group', per_group)} | {row['visual_tokens']} | {row['sequence']} | "
              f"{row['prefill_ms']:.0f} | {row['speedup']:.2f}x | {row['ideal']:.2f}x | {row['efficiency']:.2f} |")
    print(json.dumps({
        "benchmark": "prefill_qwen_video", "model": "qwen2.5-vl-7b-shaped", "llm_layers": args.layers, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "frames": args.frames, "frame_size": list(FRAME_SIZE), "groups": groups,
        "tokens_per_group": per_group, "vision_ms": round(encoded.vision_ms, 1), "build_s": round(build_s, 1), "rows": rows,
    }))


if __name__ == "__main__":
    main()
