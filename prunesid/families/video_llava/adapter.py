"""Video-LLaVA: 8 frames of a clip through a CLIP ViT-L/14 video tower, images through an
image tower of the same shape, one LLM (transformers' ``VideoLlavaForConditionalGeneration``,
``LanguageBind/Video-LLaVA-7B-hf``).

What the unmodified model feeds its LLM (read from transformers' modeling_video_llava):
- a video: every frame's hidden states of the feature layer *with* the CLS token (the video
  path ignores ``vision_feature_select_strategy``), so 8 x (1 + 256) = 2,056 tokens at 224 px,
  frame after frame, in the ``<video>`` placeholder run;
- an image: the image tower's feature layer *without* CLS under strategy ``"default"`` (256).

PruneSID runs on every frame on its own, as on a LLaVA-1.5 image (SPEC section 8): the
frames are the views, the importance is that frame's CLS attention, and with ``keep_cls`` the
frame's CLS is passed through and counted in its budget. At N = 17 per frame the LLM receives
8 x 17 = 136 video tokens: for every frame its CLS and 16 patches, frames in clip order. The
model's packing adds nothing around them (no separators, no newline tokens); images are
compressed the same way through the image tower.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, VisualRun, register_family
from prunesid.family_kit.processors import FramewiseVideoProcessor, stand_in_video_processor
from prunesid.family_kit.importance import has_cls_token
from prunesid.families.llava.adapter import Resize, views_in_sequence
from prunesid.family_kit.towers import check_strategy, encode_views

DEFAULT_FRAMES = 8


# Video-LLaVA's conversation format, "USER: <video>\n{text} ASSISTANT: {answer}</s>", with the
# image and video parts in the order the message lists them.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'video' %}<video>\n{% endif %}"
    "{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% else %} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@register_family("video_llava", "VideoLlavaForConditionalGeneration", "videos (8 frames) and images: Video-LLaVA")
class VideoLlava(Family):
    def __init__(self, model, processor):
        super().__init__(model, processor)
        if getattr(processor, "chat_template", None) is None:
            # LanguageBind/Video-LLaVA-7B-hf's main holds no template (only an unmerged revision
            # does): the model's own conversation format, as its model card writes prompts
            processor.chat_template = CHAT_TEMPLATE
        config = model.config
        self.image_tower = model.model.image_tower
        self.video_tower = model.model.video_tower
        self.patch_size = config.vision_config.patch_size
        self.feature_layer = config.vision_feature_layer
        self.strategy = config.vision_feature_select_strategy
        check_strategy(self.image_tower, self.strategy)
        if not has_cls_token(self.video_tower):
            raise ValueError("Video-LLaVA's video path feeds the tower's first token as a CLS; this video tower has none")
        side = config.vision_config.image_size // self.patch_size
        # The checkpoints' video_seq_length is frames x (CLS + patches): 2,056 = 8 x 257.
        frames, rest = divmod(getattr(config, "video_seq_length", 0) or 0, side * side + 1)
        self.num_frames = frames if frames and not rest else DEFAULT_FRAMES
        self.layout = VideoLlavaLayout(
            Resize.of(processor.image_processor), self.patch_size, self.num_frames, image_cls_fed=self.strategy == "full"
        )

    def placeholder_for(self, modality: str) -> int:
        if modality == "video":
            return self.model.config.video_token_id
        return super().placeholder_for(modality)

    def preprocess(self, image: Image.Image) -> dict:
        out = self.processor.image_processor(images=image, return_tensors="pt", return_legacy_image_output=False)
        return {"pixel_values": out.get("pixel_values", out.get("pixel_values_images"))}

    def preprocess_video(self, frames: list[Image.Image]) -> dict:
        """``pixel_values_videos`` ``[1, F, 3, 224, 224]``: the model's video processor where
        there is one (it needs torchvision); otherwise the image processor on every frame,
        which has the same settings (shortest edge 224, 224 center crop, CLIP mean / std)."""
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is not None:
            clip = np.stack([np.asarray(frame) for frame in frames])
            return {"pixel_values_videos": video_processor(videos=[clip], return_tensors="pt")["pixel_values_videos"]}
        out = self.processor.image_processor(images=list(frames), return_tensors="pt", return_legacy_image_output=False)
        return {"pixel_values_videos": out.get("pixel_values", out.get("pixel_values_images"))[None]}

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        if "pixel_values_videos" in pixel_inputs:
            tower = self.video_tower
            frames = pixel_inputs["pixel_values_videos"][0].to(tower.device, tower.dtype)
            return encode_views(tower, frames, self.feature_layer, "full")  # the video path keeps the CLS
        tower = self.image_tower
        return encode_views(tower, pixel_inputs["pixel_values"].to(tower.device, tower.dtype), self.feature_layer, self.strategy)

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """The processor's images (``pixel_values_images``), then its clips
        (``pixel_values_videos``), one input each, sized by their processed pixels."""
        items = []
        images = inputs.get("pixel_values_images", inputs.get("pixel_values"))  # the processor's older / newer name
        for pixels, modality in ((images, "image"), (inputs.get("pixel_values_videos"), "video")):
            for row in range(0 if pixels is None else pixels.shape[0]):
                height, width = pixels.shape[-2:]
                pixel_inputs = {"pixel_values_videos": pixels[row:row + 1]} if modality == "video" else {"pixel_values": pixels[row:row + 1]}
                items.append((modality, pixel_inputs, (int(width), int(height))))
        return items

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        """Images and videos each as one ``[1, n, H]`` tensor (the model scatters each
        modality's features into its placeholder positions in order)."""
        by_modality: dict[str, list[torch.Tensor]] = {}
        for run, item in zip(runs, encoded):
            by_modality.setdefault(getattr(item, "modality", "image"), []).append(run.embeds)
        return {
            "mm_encoder_outputs": {
                modality: BaseModelOutputWithPooling(pooler_output=torch.cat(embeds)[None])
                for modality, embeds in by_modality.items()
            }
        } if by_modality else {}


class VideoLlavaLayout(FamilyLayout):
    """Video-LLaVA's geometry: an image is one view of the image tower's crop, a clip is
    ``frames`` views of the video tower's, each fed as CLS + patches (the video path always
    feeds the CLS; images only under strategy "full"). Views follow one another, nothing
    in between."""

    cls_slot = True
    cls_attention = True  # both towers have a CLS (checked by the adapter)

    def __init__(self, resize: Resize, patch_size: int, frames: int, image_cls_fed: bool):
        self.resize = resize
        self.patch_size = patch_size
        self.frames = frames
        self.image_cls_fed = image_cls_fed

    def cls_fed(self, modality: str) -> bool:
        return modality == "video" or self.image_cls_fed

    def patches(self, image_size) -> int:
        width, height = self.resize.pixels(image_size)
        return (width // self.patch_size) * (height // self.patch_size)

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        return [self.patches(image_size)] * (self.frames if modality == "video" else 1)

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        """One grid per view; a clip's frames share one geometry (the video processor has the
        image processor's settings: shortest edge, center crop)."""
        grid = self.resize.grid(image_size, self.patch_size)
        if modality != "video":
            return [grid]
        return [dataclasses.replace(grid, label=f"frame {frame + 1}") for frame in range(self.frames)]

    def unmodified_tokens(self, image_size, modality="image") -> int:
        views = self.selectable_tokens(image_size, modality)
        return sum(views) + len(views) * int(self.cls_fed(modality))

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        """View after view (frames in clip order): its CLS when passed through, its kept
        tokens, its merged tokens. In the unmodified run view v starts at v x (CLS + T)."""
        stride = self.patches(image_size) + int(cls_fed)
        return views_in_sequence(kept, merged, with_cls, cls_fed, stride=stride)


# transformers' VideoLlavaVideoProcessor is the image processor on every frame (needs torchvision)
stand_in_video_processor("VideoLlavaProcessor", lambda model, images: FramewiseVideoProcessor(images, "uniform"))
