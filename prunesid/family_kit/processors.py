"""A checkpoint's processor, with or without torchvision.

transformers builds the processors of Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Video-LLaVA with a
video processor, and every video processor needs torchvision, which this project does not
install. So ``AutoProcessor.from_pretrained`` fails on those checkpoints with an ImportError
although nothing about images needs torchvision.

:func:`load_processor` therefore:

- with torchvision installed, returns the model's own processor (``AutoProcessor``);
- without it, builds the same processor class from the checkpoint's own files without its
  video slot: the image processor from ``preprocessor_config.json`` (transformers picks its
  PIL backend), the tokenizer, the chat template and ``processor_config.json`` options. Images
  and prompts come out exactly as with the full processor. Video-LLaVA's processor still takes
  ``videos=``: its video processor is its image processor applied to every frame (same
  resize, crop, mean and std), so :class:`FramewiseVideoProcessor` does that job. Qwen-VL
  processors take ``videos=`` too: :class:`QwenVideoProcessor` does the Qwen video
  processors' resize, normalisation and patching on the frames given.

Whatever goes wrong, the caller gets one ValueError naming the missing file or package and
the fix, never an ImportError from inside transformers.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Callable

from transformers.processing_utils import ProcessorMixin

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
# What stands in for a processor class's video processor when transformers' needs torchvision,
# by processor class name: build(checkpoint, image processor) -> video processor. Each family
# registers its own in its adapter (stand_in_video_processor): the video processors of this
# module are the kinds there are (FramewiseVideoProcessor, ResizedFramesVideoProcessor,
# QwenVideoProcessor).
VIDEO_STAND_INS: dict[str, Callable[[str, object], object]] = {}


def stand_in_video_processor(processor_class: str, build: Callable[[str, object], object]) -> None:
    """Without torchvision, ``processor_class``'s clips go through ``build(checkpoint, image_processor)``."""
    VIDEO_STAND_INS[processor_class] = build


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def load_processor(model: str, model_type: str, **image_options):
    """The processor of the checkpoint ``model`` (a directory or a Hub id) of ``model_type``;
    ``image_options`` (e.g. Qwen-VL's ``min_pixels`` / ``max_pixels``) go to its image processor."""
    if Path(model).is_dir():
        check_processor_files(Path(model))
    image_options = {key: value for key, value in image_options.items() if value is not None}
    try:
        processor_class = _processor_class(model, model_type)
        if torchvision_available() or "video_processor" not in processor_class.get_attributes():
            return processor_class.from_pretrained(model, **image_options)
        return _images_only_processor(processor_class, model, **image_options)
    except ImportError as error:
        raise ValueError(missing_package_message(model, error)) from error


def check_processor_files(directory: Path) -> None:
    """ValueError naming what a checkpoint directory lacks to build its processor."""
    if not (directory / IMAGE_PROCESSOR_FILE).is_file() and "image_processor" not in _json(directory / PROCESSOR_FILE):
        raise ValueError(
            f"{directory} has no {IMAGE_PROCESSOR_FILE} (nor an image_processor entry in {PROCESSOR_FILE}, where "
            f"transformers 5 saves it): the image processor's settings (resize, crop, mean and std) come from it. "
            f"Copy it from the model's Hub repository, e.g. `hf download <repo id> {IMAGE_PROCESSOR_FILE} --local-dir {directory}`"
        )
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"{directory} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}, with tokenizer_config.json). "
            f"Copy them from the model's Hub repository, e.g. `hf download <repo id> --include 'tokenizer*' "
            f"'vocab.json' 'merges.txt' --local-dir {directory}`"
        )


def missing_package_message(model: str, error: ImportError) -> str:
    """What to install, read from transformers' "requires the X library" messages."""
    named = re.search(r"requires the (\S+) librar", str(error))
    package = (named.group(1) if named else getattr(error, "name", None) or "a package").strip("`'\"").lower()
    return (
        f"{model} cannot be used: its processor needs the {package} package, which is not installed "
        f"(`pip install {package}`). Details: {error}"
    )


def _processor_class(model: str, model_type: str) -> type[ProcessorMixin]:
    """The processor class the checkpoint names (processor_class in its processor or
    preprocessor config), else transformers' default for its model type."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = _named_processor_class(model) or PROCESSOR_MAPPING_NAMES.get(model_type)
    processor_class = getattr(transformers, name, None) if isinstance(name, str) else None
    if processor_class is None:
        raise ValueError(f"{model}: no processor class {name!r} in transformers {transformers.__version__} for {model_type!r} models")
    return processor_class


def _named_processor_class(model: str) -> str | None:
    if not Path(model).is_dir():
        return None
    for file in (PROCESSOR_FILE, IMAGE_PROCESSOR_FILE):
        name = _json(Path(model) / file).get("processor_class")
        if name:
            return name
    return None


def _json(path: Path) -> dict:
    """A JSON file's object, {} when there is no such file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return data if isinstance(data, dict) else {}


# Where a checkpoint keeps its video processor's settings, first found wins: transformers 5's
# nested entry in processor_config.json, the root video_preprocessor_config.json, or the
# sub-folder the llava-hf OneVision repositories publish (an image-processor style file).
LEGACY_VIDEO_PROCESSOR_FILE = "video_processor/preprocessor_config.json"


def video_settings(model: str) -> dict:
    """The video processor's settings a checkpoint directory holds ({} where it has none, so
    the image processor's stand in, as transformers falls back to preprocessor_config.json)."""
    directory = Path(model)
    if not directory.is_dir():
        return {}
    nested = _json(directory / PROCESSOR_FILE).get("video_processor")
    if isinstance(nested, dict):
        return nested
    for name in (VIDEO_PROCESSOR_FILE, LEGACY_VIDEO_PROCESSOR_FILE):
        if (directory / name).is_file():
            return _json(directory / name)
    return {}


def _images_only_processor(processor_class: type[ProcessorMixin], model: str, **image_options) -> ProcessorMixin:
    """``processor_class`` built from the checkpoint's files without its video processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    processor_dict, _ = processor_class.get_processor_dict(model)
    accepted = inspect.signature(processor_class.__init__).parameters
    sub_processors = processor_class.get_attributes()
    options = {key: value for key, value in processor_dict.items() if key in accepted and key not in sub_processors}
    processor = without_video_processor(processor_class)(
        image_processor=AutoImageProcessor.from_pretrained(model, backend="pil", **image_options),  # what runs without torchvision
        tokenizer=AutoTokenizer.from_pretrained(model),
        **options,
    )
    from prunesid.family_kit import load_families

    load_families()  # each family's adapter registers its stand-in (a vLLM process may not have imported them yet)
    build = VIDEO_STAND_INS.get(processor_class.__name__)
    if build is not None:
        processor.video_processor = build(model, processor.image_processor)
    return processor


class FramewiseVideoProcessor:
    """Stands in for a video processor that is the image processor applied to every frame:
    ``pixel_values_videos`` ``[clips, frames, 3, H, W]`` from the image processor, whose
    settings (``size``, ``crop_size``, ...) it shows as its own.

    A clip given as a file path (as lmms-eval's InternVL class gives it) is decoded with PyAV
    and, with ``do_sample_frames``, sampled to ``num_frames`` (or ``fps``) frames by the
    model's rule, ``sampling``: ``"uniform"`` (frame ``i * total // n``, transformers' default)
    or ``"centred"`` (InternVL: the same spacing, shifted by half a step). Without sampling a
    file gives all its frames, at most ``MAX_SAMPLED_FRAMES``."""

    def __init__(self, image_processor, sampling: str = "uniform"):
        if sampling not in ("uniform", "centred"):
            raise ValueError(f"sampling must be 'uniform' or 'centred', got {sampling!r}")
        self.image_processor = image_processor
        self.sampling = sampling

    def __call__(self, videos, do_sample_frames=None, num_frames=None, fps=None, **kwargs):
        import torch
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.video_utils import make_batched_videos

        if isinstance(videos, (str, Path)) or (isinstance(videos, (list, tuple)) and videos and isinstance(videos[0], (str, Path))):
            paths = [videos] if isinstance(videos, (str, Path)) else list(videos)
            videos = [self.decoded(str(path), num_frames, fps) if do_sample_frames else self.decoded(str(path)) for path in paths]
        clips = []
        for clip in make_batched_videos(videos):
            out = self.image_processor(images=list(clip), return_tensors="pt")
            clips.append(out.get("pixel_values", out.get("pixel_values_images")))
        counts = [clip.shape[0] for clip in clips]
        if len(set(counts)) > 1:  # one [clips, frames, ...] tensor holds them
            raise ValueError(f"the clips of one call must have one frame count, got {counts}: sample them to the same num_frames")
        return BatchFeature({"pixel_values_videos": torch.stack(clips)})

    def decoded(self, path: str, num_frames: int | None = None, fps: float | None = None):
        """The frames of the clip file at ``path`` (``[frames, H, W, 3]`` uint8): all of them,
        or ``num_frames`` / ``fps`` sampled."""
        from transformers.video_utils import load_video

        from prunesid.video import MAX_SAMPLED_FRAMES

        def indices(metadata, **_):
            total = metadata.total_num_frames
            count = num_frames
            if count is None and fps is not None:
                count = max(1, int(total / metadata.fps * fps))
            if count is None:
                count = total
                if total > MAX_SAMPLED_FRAMES:
                    raise ValueError(f"clip {path} has {total} frames; at most {MAX_SAMPLED_FRAMES} are taken whole: sample it (num_frames=...)")
            if not 1 <= count <= min(total, MAX_SAMPLED_FRAMES):
                raise ValueError(f"clip {path}: cannot sample {count} frames from {total} (at most {min(total, MAX_SAMPLED_FRAMES)})")
            shift = total / count / 2 if self.sampling == "centred" else 0.0
            return [int(shift + i * total / count) for i in range(count)]

        frames, _ = load_video(path, backend="pyav", sample_indices_fn=indices)
        return frames

    def __getattr__(self, name):
        if name.startswith("__") or name in ("image_processor", "sampling"):  # copying builds one without __init__
            raise AttributeError(name)
        return getattr(self.image_processor, name)


class ResizedFramesVideoProcessor:
    """Stands in for a video processor that resizes every frame to ``size`` (no crop, the
    aspect ratio not kept), rescales and normalises it, with the image processor's own PIL
    operations: ``pixel_values_videos`` ``[clips, frames, 3, height, width]``. Settings from
    the checkpoint's video_preprocessor_config.json where it has one, else from the image
    processor (as transformers falls back to preprocessor_config.json). No frame sampling:
    it processes the frames given; ``num_frames`` is the checkpoint's setting, if any."""

    def __init__(self, image_processor, settings: dict | None = None):
        settings = settings or {}
        self.image_processor = image_processor
        size = dict(settings.get("size") or image_processor.size or {})
        self.size = {"height": int(size["height"]), "width": int(size["width"])}
        self.image_mean = settings.get("image_mean", image_processor.image_mean)
        self.image_std = settings.get("image_std", image_processor.image_std)
        self.do_rescale = bool(settings.get("do_rescale", True))
        self.do_normalize = bool(settings.get("do_normalize", True))
        self.num_frames = settings.get("num_frames")

    @classmethod
    def from_checkpoint(cls, model: str, image_processor) -> "ResizedFramesVideoProcessor":
        return cls(image_processor, video_settings(model))

    def __call__(self, videos, **kwargs):
        import numpy as np
        import torch
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.image_processing_backends import PilBackend
        from transformers.image_utils import SizeDict

        processor, size = self.image_processor, SizeDict(**self.size)
        clips = []
        for clip in _video_clips(videos):
            frames = []
            for frame in clip:
                array = PilBackend.resize(processor, _channels_first(frame), size=size, resample=processor.resample)
                array = processor.rescale(array, processor.rescale_factor)
                frames.append(processor.normalize(array, self.image_mean, self.image_std))
            clips.append(torch.from_numpy(np.stack(frames).astype(np.float32)))
        return BatchFeature({"pixel_values_videos": torch.stack(clips)})

    def __getattr__(self, name):
        if name.startswith("__") or name == "image_processor":  # copying builds one without __init__
            raise AttributeError(name)
        return getattr(self.image_processor, name)


_WITHOUT_VIDEO: dict[type, type] = {}


def without_video_processor(processor_class: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """A subclass of ``processor_class`` whose sub-processors are its image processor and
    tokenizer only: same prompts, placeholder expansion and image outputs, no video processor
    (which needs torchvision). Built once per class."""
    if processor_class in _WITHOUT_VIDEO:
        return _WITHOUT_VIDEO[processor_class]
    own_order = processor_class.get_attributes()

    class DropVideoSlot(ProcessorMixin):
        # Sits between processor_class and ProcessorMixin in the method order: receives the
        # sub-processors processor_class.__init__ hands on (in its own order) and drops the
        # empty video slot before ProcessorMixin checks them against the attributes.
        def __init__(self, *args, **kwargs):
            named = dict(zip(own_order, args))
            named.update({key: kwargs.pop(key) for key in list(kwargs) if key in own_order})
            named.pop("video_processor", None)
            ProcessorMixin.__init__(self, **named, **kwargs)

    class ImagesOnly(processor_class, DropVideoSlot):
        # The signature defines the attributes (transformers reads it): image processor and tokenizer.
        def __init__(self, image_processor=None, tokenizer=None, **kwargs):
            processor_class.__init__(self, image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **kwargs)

        def to_dict(self):
            # Saved under the model's own class name: the directory loads anywhere, complete where torchvision is.
            return {**super().to_dict(), "processor_class": processor_class.__name__}

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = f"{processor_class.__name__}WithoutVideoProcessor"
    ImagesOnly.__module__ = __name__
    _WITHOUT_VIDEO[processor_class] = ImagesOnly
    return ImagesOnly


# --- Qwen-VL clips without torchvision ------------------------------------------------------

VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"


class QwenVideoProcessor:
    """The Qwen-VL video processors' work without torchvision, on the frames it is given (no
    frame sampling: the caller samples): every frame resized to the same multiple of
    patch x merge pixels (Qwen2/2.5-VL: ``smart_resize`` per frame within min / max pixels;
    Qwen3-VL: the pixel limits hold for the whole clip), rescaled and normalised by the image
    processor's own PIL operations, an odd frame count padded by repeating the last frame,
    then cut into ``temporal_patch_size`` x patch x patch patches in the order
    transformers' ``Qwen2VLVideoProcessor.patchify`` gives: ``pixel_values_videos``
    ``[t h w, C tp p p]`` and ``video_grid_thw`` ``[videos, 3]`` as transformers' processors."""

    def __init__(self, image_processor, rule: str = "per-frame", settings: dict | None = None):
        settings = settings or {}
        self.image_processor = image_processor
        self.rule = rule
        self.patch_size = int(settings.get("patch_size", image_processor.patch_size))
        self.merge_size = int(settings.get("merge_size", image_processor.merge_size))
        self.temporal_patch_size = int(settings.get("temporal_patch_size", image_processor.temporal_patch_size))
        self.image_mean = settings.get("image_mean", image_processor.image_mean)
        self.image_std = settings.get("image_std", image_processor.image_std)
        self.do_rescale = bool(settings.get("do_rescale", True))
        self.do_normalize = bool(settings.get("do_normalize", True))
        size = dict(settings.get("size") or {})
        for key, legacy in (("shortest_edge", "min_pixels"), ("longest_edge", "max_pixels")):
            size.setdefault(key, settings.get(legacy) or (image_processor.size or {}).get(key))
        self.size = size

    @classmethod
    def from_checkpoint(cls, model: str, image_processor, rule: str) -> "QwenVideoProcessor":
        """Settings from the checkpoint's video_preprocessor_config.json where it has one
        (Qwen3-VL), else from its image processor (transformers builds Qwen2/2.5-VL's video
        processor from preprocessor_config.json)."""
        return cls(image_processor, rule, video_settings(model))

    def resized_size(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """(height, width) every frame of a clip of ``num_frames`` frames is resized to."""
        factor = self.patch_size * self.merge_size
        low, high = self.size["shortest_edge"], self.size["longest_edge"]
        if self.rule == "whole-clip":
            from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as clip_resize

            # transformers refuses a clip under one temporal patch; it is padded to one here.
            frames = max(num_frames, self.temporal_patch_size)
            return clip_resize(frames, height, width, temporal_factor=self.temporal_patch_size, factor=factor, min_pixels=low, max_pixels=high)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        return smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)

    def clip(self, frames, do_resize: bool = True, do_rescale: bool | None = None, do_normalize: bool | None = None) -> tuple["torch.Tensor", list[int]]:
        """One clip's patches ``[t h w, C tp p p]`` and its grid ``[t, h, w]`` (in patches);
        ``do_resize=False`` takes frames already at a multiple of one merged token (as
        qwen-vl-utils resizes them for Qwen3-VL, whose callers then turn the resize off);
        ``do_rescale`` / ``do_normalize`` (None: the checkpoint's setting) as transformers'
        video processors take them (a caller that normalises on its device turns them off)."""
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        import numpy as np
        import torch
        from transformers.image_processing_backends import PilBackend
        from transformers.image_utils import SizeDict

        arrays = [_channels_first(frame) for frame in frames]
        if not arrays:
            raise ValueError("a clip needs at least one frame")
        height, width = arrays[0].shape[-2:]
        if any(array.shape != arrays[0].shape for array in arrays):
            raise ValueError("every frame of a clip must have one size")
        resized_h, resized_w = self.resized_size(len(arrays), height, width) if do_resize else (height, width)
        factor = self.patch_size * self.merge_size
        if resized_h % factor or resized_w % factor:
            raise ValueError(f"with do_resize=False every frame must be a multiple of {factor} px a side, got {width} x {height}")
        processor = self.image_processor
        out = []
        for array in arrays:
            if array.dtype == np.uint8 or array.shape[-2:] != (resized_h, resized_w):
                # PIL resizes 8-bit pixels: float frames (qwen-vl-utils' resized clips, 0..255)
                # already at the size are kept as they are, others are rounded first.
                array = PilBackend.resize(processor, _as_uint8(array), size=SizeDict(height=resized_h, width=resized_w), resample=processor.resample)
            array = array.astype(np.float32)
            if do_rescale:
                array = processor.rescale(array, processor.rescale_factor)
            out.append(processor.normalize(array, self.image_mean, self.image_std) if do_normalize else array)
        tp, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        out += [out[-1]] * (-len(out) % tp)  # an odd count: the last frame again, as transformers pads
        video = np.stack(out).astype(np.float32)  # [F, C, H, W]
        grid_t, grid_h, grid_w = len(out) // tp, resized_h // p, resized_w // p
        channels = video.shape[1]
        patches = video.reshape(grid_t, tp, channels, grid_h // m, m, p, grid_w // m, m, p)
        patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        flat = patches.reshape(grid_t * grid_h * grid_w, channels * tp * p * p)
        return torch.from_numpy(np.ascontiguousarray(flat)), [grid_t, grid_h, grid_w]

    def __call__(self, videos, video_metadata=None, return_metadata: bool = False, **kwargs):
        import torch
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.video_utils import VideoMetadata

        clips = _video_clips(videos)
        options = {key: kwargs.get(key) for key in ("do_rescale", "do_normalize")}
        patches, grids = zip(*(self.clip(clip, do_resize=kwargs.get("do_resize", True) is not False, **options) for clip in clips))
        data = {"pixel_values_videos": torch.cat(patches), "video_grid_thw": torch.tensor(grids)}
        if return_metadata:
            given = _flat_metadata(video_metadata) if video_metadata is not None else [None] * len(clips)
            if len(given) != len(clips):
                raise ValueError(f"video_metadata: {len(given)} entries for {len(clips)} clips")
            data["video_metadata"] = [
                _as_metadata(meta) if meta is not None else VideoMetadata(total_num_frames=len(clip), frames_indices=list(range(len(clip))))
                for meta, clip in zip(given, clips)
            ]
        return BatchFeature(data)

    def __getattr__(self, name):
        if name.startswith("__") or name == "image_processor":  # copying builds one without __init__
            raise AttributeError(name)
        return getattr(self.image_processor, name)


def _as_metadata(meta):
    from transformers.video_utils import VideoMetadata

    return meta if isinstance(meta, VideoMetadata) else VideoMetadata(**dict(meta))


def _flat_metadata(metadata) -> list:
    """Per clip, its metadata, from a list of them or batches of lists (as the clips)."""
    if not isinstance(metadata, (list, tuple)):
        return [metadata]
    return [meta for item in metadata for meta in _flat_metadata(item)]


def _video_clips(videos) -> list[list]:
    """Clips as lists of frames: one clip (frames, a [T, H, W, 3] array or a [T, C, H, W]
    tensor), a list of clips, or batches of such lists (vLLM hands Qwen3-VL's processor one
    clip as ``[[array]]``, as transformers' ``make_batched_videos`` reads it)."""
    import numpy as np

    def is_frame(item) -> bool:
        from PIL import Image

        return isinstance(item, Image.Image) or (hasattr(item, "ndim") and item.ndim == 3)

    if hasattr(videos, "ndim") and videos.ndim == 4:
        return [list(videos)]
    videos = list(videos)
    if not videos:
        return [np.zeros(0)]
    if is_frame(videos[0]):
        return [videos]
    clips = []
    for item in videos:
        if hasattr(item, "ndim"):
            if item.ndim != 4:
                raise ValueError(f"a clip is frames or one [T, H, W, 3] / [T, C, H, W] array, got an array of {item.ndim} dimensions")
            clips.append(list(item))
        else:
            item = list(item)
            clips.extend(_video_clips(item) if item and not is_frame(item[0]) else [item])
    return clips


def _as_uint8(array):
    import numpy as np

    return array if array.dtype == np.uint8 else np.clip(np.round(array), 0, 255).astype(np.uint8)


def _channels_first(frame):
    """A frame as a uint8 ``[3, H, W]`` array (PIL image, ``[H, W, 3]`` array or ``[3, H, W]`` tensor)."""
    import numpy as np
    from PIL import Image

    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB")).transpose(2, 0, 1)
    array = frame.numpy() if hasattr(frame, "numpy") else np.asarray(frame)
    if array.shape[-1] == 3 and array.shape[0] != 3:
        array = array.transpose(2, 0, 1)
    return array
