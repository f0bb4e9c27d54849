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
  resize, crop, mean and std), so :class:`FramewiseVideoProcessor` does that job.

Whatever goes wrong, the caller gets one ValueError naming the missing file or package and
the fix, never an ImportError from inside transformers.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from transformers.processing_utils import ProcessorMixin

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
# Processor classes whose video processor is their image processor applied to every frame
# (transformers' VideoLlavaVideoProcessor: the same resize, crop, mean and std): without
# torchvision, clips go through FramewiseVideoProcessor and the processor takes videos as usual.
FRAMEWISE_VIDEO = ("VideoLlavaProcessor",)


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
    if processor_class.__name__ in FRAMEWISE_VIDEO:
        processor.video_processor = FramewiseVideoProcessor(processor.image_processor)
    return processor


class FramewiseVideoProcessor:
    """Stands in for a video processor that is the image processor applied to every frame:
    ``pixel_values_videos`` ``[clips, frames, 3, H, W]`` from the image processor, whose
    settings (``size``, ``crop_size``, ...) it shows as its own."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, videos, **kwargs):
        import torch
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.video_utils import make_batched_videos

        clips = []
        for clip in make_batched_videos(videos):
            out = self.image_processor(images=list(clip), return_tensors="pt")
            clips.append(out.get("pixel_values", out.get("pixel_values_images")))
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
