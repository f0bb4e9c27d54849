"""The ``prunesid`` command: chat with a compressed VLM, or show what PruneSID keeps.

    prunesid chat IMAGE "question" --model tiny-random --budget 64 [--grouping kmeans] [--dynamic] [--json]
    prunesid chat IMAGE "question" --method visionzip --budget 64     (or divprune, random, uniform)
    prunesid compress IMAGE --model tiny-random --budget 64 [--json] [--out overlay.png]
    prunesid chat CLIP.mp4 "question" [--model tiny-random-video-llava] [--budget 17]   (a video: N per frame)
    prunesid compress CLIP.mp4 --json    (per frame: rho, phi, tau, budget, kept; --out draws the frame strips)
    prunesid calibrate IMAGES_OR_DIRS... --model tiny-random [--json]     (phi_ref for PruneSID-Dyn)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from prunesid.grouping import GROUPINGS
from prunesid.methods import PRESSES, PruneSID
from prunesid.psca import CENTERINGS, SOLVERS
from prunesid.selection import ORDERS


DEFAULT_IMAGE_MODEL, DEFAULT_VIDEO_MODEL = "tiny-random", "tiny-random-video-llava"
DEFAULT_IMAGE_BUDGET, DEFAULT_FRAME_BUDGET = 64, 17  # the paper's Video-LLaVA setting: 17 per frame


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        print(f"prunesid {args.command}: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from prunesid.vlm.loading import DEFAULT_MODEL
    from prunesid.vlm.tiny import BUILTINS

    parser = argparse.ArgumentParser(prog="prunesid", description="PruneSID vision-token compression for LLaVA and Qwen-VL models.")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("image", help="path of the image or video file (MP4, WebM, MKV, MOV, AVI, ...)")
        sub.add_argument(
            "--model", default=None,
            help=f"built-in ({', '.join(BUILTINS)}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory; "
            f"default {DEFAULT_IMAGE_MODEL}, {DEFAULT_VIDEO_MODEL} for a video",
        )
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        sub.add_argument("--dtype", default="auto", help="auto (float16 on GPU), float32, float16, bfloat16")
        sub.add_argument("--method", choices=sorted(PRESSES), default="prunesid", help="compression method; --groups ... --phi-ref are PruneSID's options")
        sub.add_argument(
            "--budget", type=int, default=None,
            help=f"visual tokens per image (per view on LLaVA-NeXT, per frame for a video), CLS included; default "
            f"{DEFAULT_IMAGE_BUDGET}, {DEFAULT_FRAME_BUDGET} per frame for a video; Qwen-VL: per 576 merged tokens (each image keeps N_eff)",
        )
        sub.add_argument("--groups", type=int, default=None, help="K concept groups (default budget/4)")
        sub.add_argument("--lam", type=float, default=None, help="lambda of tau = lambda * rho (default budget/32)")
        sub.add_argument("--grouping", choices=sorted(GROUPINGS), default="psca")
        sub.add_argument("--centering", choices=CENTERINGS, default="token")
        sub.add_argument("--solver", choices=SOLVERS, default="exact")
        sub.add_argument("--order", choices=ORDERS, default="reference")
        sub.add_argument("--dynamic", action="store_true", help="PruneSID-Dyn: budget proportional to the image's information")
        sub.add_argument("--phi-ref", type=float, default=None, help="phi that maps to exactly --budget with --dynamic")
        sub.add_argument("--no-cls", action="store_true", help="do not pass the CLS token through")
        sub.add_argument("--min-pixels", type=int, default=None, help="Qwen-VL: lower bound of the processor's dynamic resize (pixels)")
        sub.add_argument("--max-pixels", type=int, default=None, help="Qwen-VL: upper bound of the processor's dynamic resize (pixels)")
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    chat = commands.add_parser("chat", help="answer a question about an image or a video clip")
    common(chat)
    chat.add_argument("question")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--no-compress", action="store_true", help="run the unmodified model (all visual tokens)")
    chat.set_defaults(run=_chat)

    compress = commands.add_parser("compress", help="show which tokens PruneSID keeps")
    common(compress)
    compress.add_argument("--out", default=None, help="write the overlays (groups, survivors, kept) to this PNG")
    compress.set_defaults(run=_compress)

    calibrate = commands.add_parser("calibrate", help="print phi_ref for PruneSID-Dyn: the mean information phi over images")
    calibrate.add_argument("images", nargs="+", help="image files, or directories (their image files, not recursive)")
    calibrate.add_argument("--model", default="tiny-random", help=f"built-in ({', '.join(BUILTINS)}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory")
    calibrate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    calibrate.add_argument("--dtype", default="auto", help="auto (float16 on GPU), float32, float16, bfloat16")
    calibrate.add_argument("--min-pixels", type=int, default=None, help="Qwen-VL: lower bound of the processor's dynamic resize (pixels)")
    calibrate.add_argument("--max-pixels", type=int, default=None, help="Qwen-VL: upper bound of the processor's dynamic resize (pixels)")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object (phi_ref, per-image phi) instead of the number")
    calibrate.set_defaults(run=_calibrate)
    return parser


# PruneSID's own options and their defaults: other methods refuse them rather than ignore them.
PRUNESID_OPTIONS = {
    "groups": None, "lam": None, "grouping": "psca", "centering": "token", "solver": "exact", "order": "reference",
    "dynamic": False, "phi_ref": None,
}


def _press(args):
    if args.method != "prunesid":
        given = [name for name, default in PRUNESID_OPTIONS.items() if getattr(args, name) != default]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(f"{flag} is a PruneSID option; it does not apply to --method {args.method}")
        cls = PRESSES[args.method]
        settings = {"budget": args.budget}
        if args.no_cls and "keep_cls" in {f.name for f in dataclasses.fields(cls)}:
            settings["keep_cls"] = False
        return cls(**settings)
    return PruneSID(
        budget=args.budget, groups=args.groups, lam=args.lam, grouping=args.grouping, centering=args.centering,
        dynamic=args.dynamic, phi_ref=args.phi_ref, keep_cls=not args.no_cls, order=args.order, solver=args.solver,
    )


def _load(args):
    from prunesid.images import load_image
    from prunesid.video import is_video, load_video
    from prunesid.vlm.loading import load_vlm

    video = is_video(args.image)
    if args.model is None:
        args.model = DEFAULT_VIDEO_MODEL if video else DEFAULT_IMAGE_MODEL
    if args.budget is None:
        args.budget = DEFAULT_FRAME_BUDGET if video else DEFAULT_IMAGE_BUDGET
    press = _press(args)  # settings fail before a large model is loaded
    if getattr(args, "question", "x").strip() == "":
        raise ValueError("the question is empty; ask something about the image")
    image = load_video(args.image) if video else load_image(args.image)  # a bad file fails before loading, too
    vlm = load_vlm(
        args.model, device=args.device, dtype=args.dtype, progress=not args.json or sys.stderr.isatty(),
        min_pixels=args.min_pixels, max_pixels=args.max_pixels,
    )
    if video and vlm.family.num_frames not in (None, image.num_frames):
        image = load_video(args.image, num_frames=vlm.family.num_frames)  # the model's own frame count
    return vlm, image, press


def _chat(args) -> int:
    vlm, image, press = _load(args)
    press = None if args.no_compress else press
    if args.json:
        reply = vlm.chat(image, args.question, press=press, max_new_tokens=args.max_new_tokens)
        print(json.dumps({
            "model": vlm.name,
            "answer": reply.text,
            "visual_tokens": reply.visual_tokens,
            "timings_ms": reply.timings,
            "selection": _views(vlm.encode(image), reply.selections[0]),
        }))
        return 0
    stream = vlm.stream(image, args.question, press=press, max_new_tokens=args.max_new_tokens)
    for piece in stream:
        print(piece, end="", flush=True)
    reply = stream.reply
    timings = ", ".join(f"{name.removesuffix('_ms')} {value:.0f} ms" for name, value in reply.timings.items() if name.endswith("_ms"))
    print(f"\n[{reply.visual_tokens[0]} visual tokens; {timings}]", file=sys.stderr)
    return 0


def _compress(args) -> int:
    vlm, image, press = _load(args)
    encoded = vlm.encode(image)
    selection = vlm.compress(encoded, press)[0]
    visual_tokens = int(vlm.visual_features(encoded, selection).shape[0])
    if args.out:
        import viz

        if encoded.video is not None:  # a clip: the frame strips and the per-frame chart
            from viz.frames import render_video_sheet

            if not hasattr(selection, "groups"):
                raise ValueError(f"--out draws PruneSID's per-frame layers; for a video it does not apply to --method {args.method}")
            render_video_sheet(list(image.frames), selection, encoded.grids, list(image.timestamps), press.budget).save(args.out)
        elif hasattr(selection, "groups"):
            viz.save_panel(viz.render_all(image, selection, encoded.grids), args.out)
        else:  # another method: kept patches and merged tokens' coverage
            from viz.merged import render_compression

            render_compression(image, selection, encoded.grids).save(args.out)
    if args.json:
        print(json.dumps({
            "model": vlm.name,
            "image_size": list(image.size),
            **({"clip": _clip(image)} if encoded.video is not None else {}),
            "tokens": encoded.num_tokens,
            "visual_tokens": visual_tokens,
            "vision_ms": encoded.vision_ms,
            "views": _views(encoded, selection),
        }))
    else:
        for view in _views(encoded, selection):
            if "rho" not in view:  # another method than PruneSID
                merged = f" + {view['num_merged']} merged tokens" if view.get("num_merged") else ""
                print(f"{view['label']}: kept {view['num_kept']} of {view['tokens']} patches{merged} (budget {_budget(view)})")
                continue
            print(
                f"{view['label']}: kept {view['num_kept']} of {view['tokens']} patches "
                f"(budget {_budget(view)}), rho {view['rho']:.3f}, phi {view['phi']:.3f}, tau {view['tau']:.3f}, "
                f"K {view['num_groups']}, quotas {view['quotas']}"
            )
        print(f"the language model receives {visual_tokens} visual tokens" + (f"; overlays written to {args.out}" if args.out else ""))
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _calibrate(args) -> int:
    """phi_ref = the mean phi over every view of the images, as ``VLM.calibrate`` computes it
    (and as the lmms-eval plug-in does over the evaluated images when phi_ref is not given)."""
    from pathlib import Path

    from prunesid.vlm.loading import load_vlm

    files = []
    for given in map(Path, args.images):
        if given.is_dir():
            found = sorted(p for p in given.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{given} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif given.is_file():
            files.append(given)
        else:
            raise ValueError(f"{given}: no such file or directory")
    vlm = load_vlm(
        args.model, device=args.device, dtype=args.dtype, progress=not args.json or sys.stderr.isatty(),
        min_pixels=args.min_pixels, max_pixels=args.max_pixels,
    )
    per_image = []
    for path in files:
        try:
            per_image.append(vlm.encode(str(path)).information())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
    phis = [phi for views in per_image for phi in views]
    phi_ref = sum(phis) / len(phis)
    if args.json:
        print(json.dumps({
            "model": vlm.name, "phi_ref": phi_ref, "images": len(files), "views": len(phis),
            "phi": {str(path): sum(views) / len(views) for path, views in zip(files, per_image)},
        }))
    else:
        print(f"{phi_ref:.6f}")
        print(f"phi_ref over {len(files)} images ({len(phis)} views); use it as --phi-ref or phi_ref= in --model_args", file=sys.stderr)
    return 0


def _clip(video) -> dict:
    """Where a video's sampled frames sit in the clip."""
    return {
        "frames": video.num_frames, "indices": list(video.indices), "timestamps": list(video.timestamps),
        "total_frames": video.total_frames, "duration_s": video.duration, "fps": video.fps,
    }


def _budget(view: dict) -> str:
    """N, and N_eff where the preset derives another count from it (Qwen-VL)."""
    requested = view.get("budget_requested", view["budget"])
    return str(view["budget"]) if requested == view["budget"] else f"N={requested}, N_eff={view['budget']}"


def _views(encoded, selection) -> list[dict] | None:
    if selection is None:
        return None
    return [
        {"label": grid.label, "box": list(grid.box), **selection.to_dict(view)}
        for view, grid in enumerate(encoded.grids)
    ]


if __name__ == "__main__":
    sys.exit(main())
