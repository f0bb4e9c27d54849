"""What PruneSID buys in the LLM prefill of a random-weight model shaped like Mini-Gemini-7B.

The model: MGM-7B's towers (CLIP ViT-L/14-336, 24 layers of width 1024, feature layer -2;
OpenCLIP's ConvNeXt-L trunk, 192/384/768/1536 channels, depths 3/3/27/3, on the 768 px aux
input), patch-info mining (1024 wide) and mlp2x_gelu projector, and a Llama LLM with
Vicuna-7B's widths (hidden 4096, MLP 11008, 32 heads, vocab 32000) but only LLM_LAYERS of its
32 decoder layers, so that it runs on a CPU box (speedup ratios carry over; absolute times
scale with the layer count). ``--hd``: MGM-7B-HD's geometry (aux 1536, 2 x 2 crops + global,
2,880 visual tokens; N per view, so N = 64 feeds 320).

One process: the image is encoded once; each round times, in turn, the prefill with all
visual tokens and with N = 192 / 128 / 64 per view (a forward over the prompt with logits for
the last position only) and the compressor (select() on the cached mined features, exact and
randomized solver). Medians over the rounds. Ideal = full sequence / compressed sequence.

    python benchmarks/prefill_mgm.py [--layers 2] [--rounds 3] [--hd]

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
from transformers import CLIPImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prefill import measure_rows, picture, print_rows  # noqa: E402
from prunesid.vlm import VLM, wrap  # noqa: E402
from prunesid.families.llava.builtins import build_tokenizer  # noqa: E402
from prunesid.families.mini_gemini.adapter import CHAT_TEMPLATES, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, MiniGeminiProcessor  # noqa: E402
from prunesid.families.mini_gemini.checkpoint import MiniGeminiConfig, build_model  # noqa: E402


def build(layers: int, hd: bool) -> VLM:
    tokenizer = build_tokenizer()
    aux = 1536 if hd else 768
    config = MiniGeminiConfig({
        "model_type": "mgm", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": layers, "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_vision_tower_aux": "model_zoo/OpenAI/openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup",
        "mm_hidden_size": 1024, "mm_hidden_size_aux": 2880, "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "image_size_aux": aux, "image_grid": 2 if hd else 1, "image_global": hd, "image_aspect_ratio": "pad",
    })
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    model = build_model(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": aux}, crop_size={"height": aux, "width": aux}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
    )
    name = f"mgm-7b{'-hd' if hd else ''}-shaped ({layers} LLM layers, random)"
    return wrap(model, MiniGeminiProcessor(tokenizer, image_processor, CHAT_TEMPLATES["llama"]), name=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="LLM decoder layers (the real model has 32)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hd", action="store_true", help="MGM-7B-HD's geometry (5 views)")
    args = parser.parse_args()

    start = time.perf_counter()
    vlm = build(args.layers, args.hd)
    build_s = time.perf_counter() - start
    image = picture()
    encoded = vlm.encode(image)
    rows = measure_rows(vlm, image, encoded, args.rounds)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"Prefill on {vlm.name}: CLIP-L/336 + ConvNeXt-L (aux {vlm.model.config.image_size_aux} px) + {args.layers} of 32 "
          f"LLM layers, CPU, {torch.get_num_threads()} threads, medians of {args.rounds} rounds")
    print(f"vision (both towers + mining): {encoded.vision_ms:.0f} ms once per image; built in {build_s:.0f} s; peak RSS {peak_rss_gb:.1f} GB\n")
    print_rows(rows)
    print(json.dumps({
        "benchmark": "prefill_mgm", "hd": args.hd, "llm_layers": args.layers, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "vision_ms": round(encoded.vision_ms, 1), "peak_rss_gb": round(peak_rss_gb, 2), "rows": rows,
    }))


if __name__ == "__main__":
    main()
