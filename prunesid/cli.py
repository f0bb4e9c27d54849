"""The ``prunesid`` command: chat with a compressed VLM, or show what a method keeps.

    prunesid chat IMAGE "question" --model tiny-random --budget 64 [--method METHOD] [method options] [--json]
    prunesid compress IMAGE --model tiny-random --budget 64 [--json] [--out overlay.png]
    prunesid chat CLIP.mp4 "question" [--model tiny-random-video-llava] [--budget 17]   (a video: N per frame)
    prunesid compress CLIP.mp4 --json    (per frame: the method's numbers, kept tokens; --out draws the frame strips)
    prunesid chat CLIP.mp4 "question" --model tiny-random-qwen2.5-vl --fps 2   (Qwen-VL: frames at a rate of the clip)
    prunesid calibrate IMAGES_OR_DIRS... --model tiny-random [--json]     (phi_ref for a dynamic budget)

``--method`` and the method options are derived from the press registry
(``prunesid.methods``): every registered press, plug-ins included, with its own options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from prunesid.family_kit.names import BUILTIN_NAMES, DEFAULT_MODEL
from prunesid.family_kit.options import FAMILY_OPTIONS, NEWLINES  # noqa: F401  (NEWLINES: the --newlines choices)
from prunesid.methods import Press, presses
from prunesid.methods.registry import build_press, default_method, has_groups, options_of
from prunesid.presets import get_preset


DEFAULT_IMAGE_MODEL, DEFAULT_VIDEO_MODEL = "tiny-random", "tiny-random-video-llava"
DEFAULT_FRAME_BUDGET = 17  # the paper's Video-LLaVA setting: 17 per frame
# The built-ins' names from a list kept without transformers, whose import costs seconds help does not need.
BUILTIN_LIST = ", ".join(BUILTIN_NAMES)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as error:  # OSError: a file that cannot be read or written
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunesid", description="PruneSID vision-token compression for LLaVA and Qwen-VL models.",
        epilog=f"methods (--method): {', '.join(presses())}; their options: prunesid compress --help",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("image", help="path of the image or video file (MP4, WebM, MKV, MOV, AVI, ...)")
        sub.add_argument(
            "--model", default=None,
            help=f"built-in ({BUILTIN_LIST}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory; "
            f"default {DEFAULT_IMAGE_MODEL}, {DEFAULT_VIDEO_MODEL} for a video",
        )
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        sub.add_argument("--dtype", default="auto", help="auto (float16 on GPU), float32, float16, bfloat16")
        method_options(sub)
        model_options(sub)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    chat = commands.add_parser("chat", help="answer a question about an image or a video clip")
    common(chat)
    chat.add_argument("question")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--no-compress", action="store_true", help="run the unmodified model (all visual tokens)")
    chat.set_defaults(run=_chat)

    compress = commands.add_parser("compress", help="show which tokens a method keeps")
    common(compress)
    compress.add_argument("--out", default=None, help="write the overlays to this PNG (groups, survivors and kept tokens where the method has groups; else kept and merged tokens)")
    compress.set_defaults(run=_compress)

    calibrate = commands.add_parser("calibrate", help="print phi_ref for a dynamic budget (--dynamic): the mean information phi over images")
    calibrate.add_argument("images", nargs="+", help="image files, or directories (their image files, not recursive)")
    calibrate.add_argument("--model", default="tiny-random", help=f"built-in ({BUILTIN_LIST}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory")
    calibrate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    calibrate.add_argument("--dtype", default="auto", help="auto (float16 on GPU), float32, float16, bfloat16")
    model_options(calibrate, media="image")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object (phi_ref, per-image phi) instead of the number")
    calibrate.set_defaults(run=_calibrate)
    return parser


def method_options(sub: argparse.ArgumentParser) -> None:
    """``--method`` and one flag per option of the registered presses; an option's flag
    says which methods take it, and stays None (the press's default) unless given."""
    found = presses()
    default = default_method()
    sub.add_argument(
        "--method", choices=list(found), default=default,
        help=f"compression method (default {default}): " + "; ".join(f"{name}: {_about(cls.info)}" for name, cls in found.items()),
    )
    group = sub.add_argument_group("method options (each applies to the methods in brackets; default: the method's own)")
    common = {spec.name: spec for spec in options_of(Press)}  # every press's options (budget, keep_cls)
    owners: dict[str, dict] = {}  # option name -> {method: its declaration}
    for name, cls in found.items():
        for spec in options_of(cls):
            owners.setdefault(spec.name, {})[name] = spec
    for option_name, specs in owners.items():
        spec = common.get(option_name) or next(iter(specs.values()))  # the shared help, else the first method's
        scope = "every method" if len(specs) == len(found) else ", ".join(specs)
        defaults = {method: other.default for method, other in specs.items()}
        differ = None
        if len(set(map(repr, defaults.values()))) > 1:
            differ = ", ".join(f"{method} {value}" for method, value in defaults.items())
        text = f"[{scope}] {spec.help}{spec.describe_values(differ)}"
        if option_name == "budget":
            text += f"; {DEFAULT_FRAME_BUDGET} per frame for a video"
        dest = f"option_{option_name}"
        if spec.kind is bool:
            group.add_argument(*spec.flags, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text.replace("%", "%%"))
        else:
            group.add_argument(*spec.flags, dest=dest, default=None, metavar=spec.name.upper(), help=text.replace("%", "%%"))


def model_options(sub: argparse.ArgumentParser, media: str | None = None) -> None:
    """One flag per model family option (``prunesid.family_kit.options``), None unless given;
    ``media="image"``: a command that reads images only leaves out the clips' options."""
    for spec in FAMILY_OPTIONS.values():
        if media is not None and media not in spec.declaration.media:
            continue
        extra = {"choices": spec.choices} if spec.choices is not None else {"type": _typed(spec)}
        if spec.declaration.metavar:
            extra["metavar"] = spec.declaration.metavar
        sub.add_argument(*spec.flags, dest=spec.name, default=None, help=spec.help, **extra)


def _typed(spec):
    """argparse's ``type`` for a declared option: its own parser's reason, without the name
    argparse already gives (``argument --fps: must be ...``); else the plain type."""
    if spec.declaration.parser is None:
        return spec.kind

    def parse(text: str):
        try:
            return spec.parse_text(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{spec.name} ")) from None

    return parse


def _about(info) -> str:
    return info.summary + (f" ({info.label}, {info.paper})" if info.paper else "")


def _given_options(args) -> dict:
    """The method options typed on the command line, by option name."""
    return {key.removeprefix("option_"): value for key, value in vars(args).items() if key.startswith("option_") and value is not None}


def _press(args):
    """The press of ``--method`` from the given options; an option of another method is
    refused rather than ignored."""
    cls = presses()[args.method]
    given = _given_options(args)
    own = {spec.name for spec in options_of(cls)}
    for name in given:
        if name not in own:
            owners = [method for method, other in presses().items() if name in {spec.name for spec in options_of(other)}]
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is an option of {', '.join(owners)}; it does not apply to --method {args.method}")
    return build_press(args.method, given, shown=lambda name: "--" + name.replace("_", "-"))


def _family_values(args) -> dict:
    """The model family options the command offers, by name (None: not given)."""
    return {name: getattr(args, name) for name in FAMILY_OPTIONS if hasattr(args, name)}


def _load(args):
    from prunesid.images import load_image
    from prunesid.video import DEFAULT_FRAMES, FrameRate, is_video, load_video
    from prunesid.vlm.loading import load_vlm

    video = is_video(args.image)
    if args.fps is not None and not video:
        raise ValueError(f"--fps sets how a clip's frames are sampled; {args.image} is an image, not a video")
    defaulted = args.model is None
    if defaulted:
        args.model = DEFAULT_VIDEO_MODEL if video else DEFAULT_IMAGE_MODEL
    frame_budget = video and args.option_budget is None
    if frame_budget:
        args.option_budget = DEFAULT_FRAME_BUDGET
    press = _press(args)  # settings fail before a large model is loaded
    if getattr(args, "question", "x").strip() == "":
        raise ValueError("the question is empty; ask something about the image")
    sampling = DEFAULT_FRAMES if args.fps is None else FrameRate(fps=args.fps)
    image = load_video(args.image, num_frames=sampling) if video else load_image(args.image)  # a bad file fails before loading, too
    if defaulted:  # only once the settings and the file are accepted: an error stays one line
        print(
            f"no --model given: {args.model}, an offline built-in with random weights "
            "(its answers are noise; which tokens it keeps is real)", file=sys.stderr,
        )
    vlm = load_vlm(
        args.model, device=args.device, dtype=args.dtype, progress=not args.json or sys.stderr.isatty(),
        **_family_values(args),
    )
    if video and vlm.family.num_frames not in (None, image.num_frames, sampling):
        image = load_video(args.image, num_frames=vlm.family.num_frames)  # the model's own frame count
    if frame_budget and not get_preset(vlm.family.preset).budget_per_view:  # e.g. Qwen-VL: N per 576 merged tokens, as for images
        args.option_budget = None
        press = _press(args)
    return vlm, image, press


def _check_writable(path: str) -> None:
    from pathlib import Path

    folder = Path(path).expanduser().resolve().parent
    if not folder.is_dir():
        raise ValueError(f"--out {path}: the folder {folder} does not exist")
    if Path(path).is_dir():
        raise ValueError(f"--out {path}: that is a folder; give a file name such as overlay.png")


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
    print()  # the answer ends its line, as any command's output does
    reply = stream.reply
    timings = ", ".join(f"{name.removesuffix('_ms')} {value:.0f} ms" for name, value in reply.timings.items() if name.endswith("_ms"))
    print(f"[{reply.visual_tokens[0]} visual tokens; {timings}]", file=sys.stderr)
    return 0


def _compress(args) -> int:
    if args.out:
        args.out = os.path.expanduser(args.out)  # "~/x.png" as a shell would have it
        _check_writable(args.out)  # before the model is loaded
    vlm, image, press = _load(args)
    encoded = vlm.encode(image)
    selection = vlm.compress(encoded, press)[0]
    visual_tokens = int(vlm.visual_features(encoded, selection).shape[0])
    if args.out:
        import viz

        if encoded.video is not None:  # a clip: the frame strips and the per-frame chart
            from viz.frames import frames_per_view, render_video_sheet

            if not has_groups(selection):
                raise ValueError(f"--out draws the per-frame groups and quotas; --method {args.method} has none to draw for a video")
            frames, timestamps = frames_per_view(list(image.frames), list(image.timestamps), encoded.num_views)
            render_video_sheet(frames, selection, encoded.grids, timestamps, press.budget).save(args.out)
        elif has_groups(selection):  # groups, survivors and kept tokens
            viz.save_panel(viz.render_all(image, selection, encoded.grids), args.out)
        else:  # kept patches and merged tokens' coverage
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
        report = presses()[args.method].info.diagnostics.report
        for view in _views(encoded, selection):
            merged = f" + {view['num_merged']} merged tokens" if view.get("num_merged") else ""
            numbers = "".join(f", {label} {_number(view[key])}" for key, label in report if key in view)
            print(f"{view['label']}: kept {view['num_kept']} of {view['tokens']} patches{merged} (budget {_budget(view)}){numbers}")
        print(f"the language model receives {visual_tokens} visual tokens" + (f"; overlays written to {args.out}" if args.out else ""))
    return 0


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


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
        **_family_values(args),
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
        # The rate the frames were taken at (Qwen2.5-VL's second_per_grid_ts is 2 / it).
        "sampled_fps": video.num_frames / video.total_frames * video.fps if video.fps else None,
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
