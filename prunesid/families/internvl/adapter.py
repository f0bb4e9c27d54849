"""InternVL (InternVL3, transformers' ``InternVLForConditionalGeneration``): dynamic 448 px tiles,
InternViT with a CLS token, a 2 x 2 pixel shuffle, then the MLP projector.

What the unmodified model feeds its LLM (read from transformers' modeling_internvl and
GotOcr2's image processor):

- tiles: the image is stretched to the tile grid (cols x rows tiles of 448 px, at most
  ``max_patches``) whose aspect ratio is closest to the image's, and cut into those tiles;
  with more than one tile a thumbnail of the whole image (resized to 448 x 448) follows them.
  Each tile and the thumbnail is a **view** here, compressed on its own with the per-view
  budget (as LLaVA-NeXT's tiles);
- per view: InternViT's feature layer (``vision_feature_layer``, -1 in InternVL3), the CLS
  token dropped (strategy ``"default"``), 32 x 32 patches pixel-shuffled into 16 x 16 tokens
  of 4 x the tower's width (each the four patches of one 2 x 2 block, concatenated), then the
  projector (LayerNorm + MLP, per token) into the LLM's width: 256 tokens per view, views
  one after the other in the ``<img><IMG_CONTEXT>...</img>`` run of the image, no separator.

Where tokens are cut: after the pixel shuffle, before the projector. Those 256 tokens per view
are exactly the LLM's tokens (one kept token = one LLM token), and their features are the
tower's own (the four patches of a block side by side), so the similarities PruneSID groups
by are tower similarities, as on LLaVA, where the press sees the tower's feature layer; the
projector then runs on the kept tokens only.

Importance: InternViT has a CLS token; the model drops it before the shuffle, so no CLS is
among the tokens fed, but its attention row in the feature layer exists. A token's importance
is the CLS query's attention (summed over heads) to the four patches of its block, averaged:
the same signal PruneSID and VisionZip use on CLIP towers, read at the LLM's granularity. It
is recomputed from the layer's own projections (q_norm / k_norm included), so the tower keeps
its fast attention. VisionZip's keys are that layer's keys, averaged over heads and over the
block. There is no CLS slot (a CLS is one patch wide; the projector takes four), so
``keep_cls`` has nothing to pass through and every press spends its whole budget on tokens.

Video: a clip is ``num_frames`` frames (8, sampled uniformly), each resized to 448 x 448 with
no tiles (transformers' InternVL video processor), each frame a view of 256 tokens; the
processor writes ``Frame{i}: <img><IMG_CONTEXT>...</img>`` per frame, joined by newlines.
"""

from __future__ import annotations

import re

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from prunesid.geometry import PatchGrid
from prunesid.family_kit.base import Family, FamilyLayout, FeedPlan, VisionOutput, VisualRun, register_family
from prunesid.family_kit.processors import FramewiseVideoProcessor, stand_in_video_processor, video_settings
from prunesid.families.llava.adapter import views_in_sequence

FRAMES = 8
# What the processor writes before each frame's <img> run: "Frame1: ", "\nFrame2: ", ...
FRAME_LABEL = re.compile(r"Frame(\d+): $")
LABEL_TOKENS = 8  # enough tokens before an <img> to hold its frame label


@register_family("internvl", "InternVLForConditionalGeneration", "dynamic 448 px tiles, pixel shuffle: InternVL3")
class InternVL(Family):
    num_frames = FRAMES

    def __init__(self, model, processor):
        super().__init__(model, processor)
        config = model.config
        vision = config.vision_config
        self.vision_tower = model.model.vision_tower
        self.feature_layer = config.vision_feature_layer
        if not isinstance(self.feature_layer, int):
            raise ValueError(f"InternVL with several feature layers ({self.feature_layer!r}) is not supported, only one layer")
        if config.vision_feature_select_strategy != "default":
            raise ValueError(
                "InternVL pixel-shuffles a square grid of patches: vision_feature_select_strategy "
                f"{config.vision_feature_select_strategy!r} is not supported, only 'default' (the CLS dropped)"
            )
        scale = 1 / config.downsample_ratio
        if abs(scale - round(scale)) > 1e-6:
            raise ValueError(f"downsample_ratio must be 1 / an integer, got {config.downsample_ratio}")
        self.shuffle = round(scale)  # patches per side of one LLM token (2)
        tile, patch = _side(vision.image_size), _side(vision.patch_size)
        self.patches_per_side = tile // patch
        if self.patches_per_side % self.shuffle:
            raise ValueError(f"{self.patches_per_side} patches per side cannot be pixel-shuffled by {self.shuffle}")
        image_processor = processor.image_processor
        # The kwargs class passed explicitly: transformers before 5.24 requires it.
        merged = processor._merge_kwargs(processor.valid_processor_kwargs, tokenizer_init_kwargs=processor.tokenizer.init_kwargs)
        self.image_options = merged["images_kwargs"]
        crop = self.image_options.get("crop_to_patches", getattr(image_processor, "crop_to_patches", False))
        size = image_processor.size
        self.layout = InternVLLayout(
            tile=tile, side=self.patches_per_side // self.shuffle,
            min_patches=int(self.image_options.get("min_patches", image_processor.min_patches)),
            max_patches=int(self.image_options.get("max_patches", image_processor.max_patches)) if crop else 1,
            frames=self.num_frames,
        )
        if (int(size["height"]), int(size["width"])) != (tile, tile):
            raise ValueError(f"the image processor's size {dict(size)} differs from the tower's {tile} px tiles")
        tokenizer = processor.tokenizer
        self.start_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "start_image_token", "<img>"))
        self.end_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "end_image_token", "</img>"))
        self.video_token_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "video_token", "<video>"))

    # --- pixels -------------------------------------------------------------------------

    def placeholder_for(self, modality: str) -> int:
        """Images: ``<IMG_CONTEXT>``. Clips: ``<video>`` while the prompt is laid out (one per
        clip in a chat template's output, then one per frame), so each modality's runs are
        told apart; the model reads every frame run as ``<IMG_CONTEXT>`` (:meth:`model_input_ids`)."""
        if modality == "video":
            return self.video_token_id
        return super().placeholder_for(modality)

    def preprocess(self, image: Image.Image) -> dict:
        """The tiles (and thumbnail) as the processor makes them: its own image options
        (``crop_to_patches`` on) applied to the image processor."""
        out = self.processor.image_processor(images=image, return_tensors="pt", **self.image_options)
        return {"pixel_values": out["pixel_values"]}

    def preprocess_video(self, frames: list[Image.Image]) -> dict:
        """``pixel_values`` ``[F, 3, 448, 448]``: every frame resized whole (no tiles), by the
        model's video processor where there is one (it needs torchvision), else by its stand-in,
        the image processor with the checkpoint's video settings and tiling off; a processor
        built in memory without either: the image processor with tiling off."""
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is not None and not _framewise(video_processor):
            out = video_processor(videos=[list(frames)], return_tensors="pt", do_sample_frames=False)
            return {"pixel_values": out["pixel_values_videos"][0]}
        frames_processor = video_processor.image_processor if video_processor is not None else self.processor.image_processor
        out = frames_processor(images=list(frames), return_tensors="pt", crop_to_patches=False)
        return {"pixel_values": out["pixel_values"]}

    # --- the tower ----------------------------------------------------------------------

    def encode(self, pixel_inputs: dict) -> VisionOutput:
        tower = self.vision_tower
        views = pixel_inputs["pixel_values"].to(tower.device, tower.dtype)
        out = tower(pixel_values=views, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states
        index = self.feature_layer % len(hidden)
        # The model reads last_hidden_state for layer -1 (after the tower's final norm, if any).
        selected = out.last_hidden_state if self.feature_layer == -1 else hidden[index]
        importance = keys = None
        if index >= 1:  # the layer whose output is the feature layer; its input is one state earlier
            importance, keys = internvit_cls_attention(tower.encoder.layer[index - 1], hidden[index - 1])
            importance = self.block_mean(importance[:, 1:, None])[..., 0]
            keys = self.block_mean(keys[:, 1:])
        return VisionOutput(features=self.shuffled(selected[:, 1:]), cls=None, importance=importance, cls_fed=False, keys=keys)

    def shuffled(self, patches: torch.Tensor) -> torch.Tensor:
        """``[V, P, D] -> [V, P / 4, 4 D]``: the model's own pixel shuffle of the patch grid."""
        views, count, width = patches.shape
        side = self.patches_per_side
        grid = patches.reshape(views, side, side, width)
        shuffled = self.model.model.pixel_shuffle(grid, scale_factor=1 / self.shuffle)
        return shuffled.reshape(views, -1, shuffled.shape[-1])

    def block_mean(self, values: torch.Tensor) -> torch.Tensor:
        """``[V, P, d] -> [V, P / 4, d]``: each token's mean over the patches of its block,
        grouped by the same pixel shuffle (so it lines up with the features token for token)."""
        shuffled = self.shuffled(values)
        return shuffled.reshape(*shuffled.shape[:2], self.shuffle * self.shuffle, values.shape[-1]).mean(dim=2)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.model.multi_modal_projector(features[None])[0]

    def generation_inputs(self, input_ids: torch.Tensor, runs: list[VisualRun], encoded: list) -> dict:
        """Every input's tokens (images and frames alike) as one ``[1, n, H]`` tensor: the model
        scatters them into its ``<IMG_CONTEXT>`` positions in prompt order."""
        if not runs:
            return {}
        features = torch.cat([run.embeds for run in runs])[None]
        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}

    # --- the prompt ---------------------------------------------------------------------

    def expand_prompt(self, prompt_ids: torch.Tensor, media: list) -> torch.Tensor:
        """Each image's placeholder wrapped in ``<img> ... </img>`` as the processor writes it
        (a chat template's output holds the placeholder alone); a prompt whose placeholders
        are already wrapped (a processor's output) is unchanged."""
        ids = self.expand_video(prompt_ids[0], media)
        if any(item.modality == "video" for item in media) and not bool((ids == self.video_token_id).any()):
            ids = self.processor_input_ids(ids)  # a processor's output: its frame runs are the clips'
        lone = ids == self.placeholder_token_id
        lone[1:] &= ids[:-1] != self.start_id
        lone[1:] &= ids[:-1] != self.placeholder_token_id
        if not bool(lone.any()):
            return ids[None]
        pieces, last = [], 0
        wrap = torch.tensor([self.start_id, self.placeholder_token_id, self.end_id], dtype=ids.dtype, device=ids.device)
        for position in lone.nonzero().flatten().tolist():
            pieces += [ids[last:position], wrap]
            last = position + 1
        pieces.append(ids[last:])
        return torch.cat(pieces)[None]

    def processor_input_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` with every frame run (labelled ``FrameK: `` by the processor) written in
        ``<video>``, as the library lays a clip's frames out until :meth:`model_input_ids`."""
        ids = ids.clone()
        for (position, length), frame in zip(_run_spans(ids == self.placeholder_token_id), self.frame_numbers(ids)):
            if frame is not None:
                ids[position:position + length] = self.video_token_id
        return ids

    def model_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The model scatters images and frames alike into ``<IMG_CONTEXT>`` positions."""
        return torch.where(input_ids == self.video_token_id, self.placeholder_token_id, input_ids)

    def placeholder_runs(self, encoded, run: VisualRun) -> tuple[list[int], list[int]]:
        """A clip: one run per frame (its 256 tokens unmodified, its kept ones under a press)."""
        if encoded.modality != "video":
            return super().placeholder_runs(encoded, run)
        per_view = self.layout.tokens_per_view
        views = _token_views(run.origin.cpu().long(), per_view)
        return [per_view] * encoded.num_views, torch.bincount(views, minlength=encoded.num_views).tolist()

    def expand_video(self, ids: torch.Tensor, media: list) -> torch.Tensor:
        """Each clip's one ``<video>`` (a chat template's) becomes its frames as the processor
        writes them, ``Frame1: <img><video></img>\nFrame2: <img><video></img>...``, one
        placeholder per frame (widened to the frame's count later)."""
        clips = [item for item in media if item.modality == "video"]
        positions = (ids == self.video_token_id).nonzero().flatten().tolist()
        if not clips or len(positions) != len(clips):
            return ids  # a processor's output (frames already written) or a mismatch named later
        tokenizer = self.processor.tokenizer
        pieces, last = [], 0
        for position, clip in zip(positions, clips):
            pieces.append(ids[last:position])
            expansion = []
            for frame in range(clip.num_views):
                text = f"Frame{frame + 1}: " if frame == 0 else f"\nFrame{frame + 1}: "
                expansion += tokenizer(text, add_special_tokens=False)["input_ids"]
                expansion += [self.start_id, self.video_token_id, self.end_id]
            pieces.append(torch.tensor(expansion, dtype=ids.dtype, device=ids.device))
            last = position + 1
        pieces.append(ids[last:])
        return torch.cat(pieces)

    def split_inputs(self, inputs: dict) -> list[tuple[str, dict, tuple[int, int]]]:
        """The processor's ``pixel_values`` (every view of every input, stacked) cut by the
        ``<img> ... </img>`` runs of ``input_ids``: a run of k x 256 placeholders is one image
        of k views; the runs the processor labelled ``Frame1: ``, ``Frame2: ``, ... are one
        clip's frames. The processor keeps no image size; each image gets a size the layout
        tiles into the same number of views."""
        pixels = inputs.get("pixel_values")
        if pixels is None:
            return []
        ids = inputs["input_ids"][0]
        per_view = self.layout.tokens_per_view
        items, start = [], 0
        for (position, length), frame in zip(_run_spans(ids == self.placeholder_token_id), self.frame_numbers(ids)):
            views, rest = divmod(length, per_view)
            if rest or not views:
                raise ValueError(f"an image run of {length} placeholders is not a whole number of {per_view}-token views")
            if frame is None:
                items.append(("image", {"pixel_values": pixels[start:start + views]}, self.layout.size_for_views(views)))
            elif frame == 1 or not items or items[-1][0] != "video":
                items.append(("video", {"pixel_values": pixels[start:start + views]}, (self.layout.tile, self.layout.tile)))
            else:  # the clip's next frame
                frames = items[-1][1]["pixel_values"]
                items[-1][1]["pixel_values"] = torch.cat([frames, pixels[start:start + views]])
            start += views
        if start != pixels.shape[0]:
            raise ValueError(f"the prompt's image runs hold {start} views but pixel_values has {pixels.shape[0]}")
        return items

    def frame_numbers(self, ids: torch.Tensor) -> list[int | None]:
        """Per ``<IMG_CONTEXT>`` run of ``ids`` (a processor's output), the frame number the
        processor wrote before its ``<img>``, or None for an image's run."""
        decode = self.processor.tokenizer.decode
        numbers = []
        for position, _ in _run_spans(ids == self.placeholder_token_id):
            label = FRAME_LABEL.search(decode(ids[max(0, position - 1 - LABEL_TOKENS):max(0, position - 1)].tolist()))
            numbers.append(int(label.group(1)) if label else None)
        return numbers


class InternVLLayout(FamilyLayout):
    """InternVL's tiling from its processor's numbers: tile side, min / max tiles; 256 tokens
    (16 x 16 after the shuffle) per view, views in sequence."""

    cls_slot = False  # the projector takes 2 x 2 blocks: a CLS (one patch wide) has no slot
    cls_attention = True  # InternViT has a CLS, whose attention the adapter reads

    def __init__(self, tile: int, side: int, min_patches: int, max_patches: int, frames: int = FRAMES):
        self.tile = tile
        self.side = side
        self.min_patches = min_patches
        self.max_patches = max_patches
        self.frames = frames

    @property
    def tokens_per_view(self) -> int:
        return self.side * self.side

    def tiles(self, image_size) -> tuple[int, int]:
        """(cols, rows) of the tile grid, by the image processor's own rule (1 x 1: no tiling)."""
        if self.max_patches <= 1:
            return 1, 1
        width, height = image_size
        return get_optimal_tiled_canvas((height, width), (self.tile, self.tile), self.min_patches, self.max_patches)

    def num_views(self, image_size, modality="image") -> int:
        if modality == "video":
            return self.frames
        cols, rows = self.tiles(image_size)
        return cols * rows + int(cols * rows > 1)  # the thumbnail follows more than one tile

    def size_for_views(self, views: int) -> tuple[int, int]:
        """An image size this layout tiles into ``views`` views (a row of ``views - 1`` tiles
        plus the thumbnail): what an input known only by its view count is sized as."""
        size = (self.tile, self.tile) if views == 1 else ((views - 1) * self.tile, self.tile)
        if self.num_views(size) != views:
            raise ValueError(f"no image of this model is cut into {views} views (between {self.min_patches} and {self.max_patches} tiles, plus a thumbnail)")
        return size

    def selectable_tokens(self, image_size, modality="image") -> list[int]:
        return [self.tokens_per_view] * self.num_views(image_size, modality)

    def grids(self, image_size, modality="image") -> list[PatchGrid]:
        width, height = image_size
        whole = (0.0, 0.0, float(width), float(height))
        if modality == "video":
            return [PatchGrid(self.side, self.side, whole, label=f"frame {frame + 1}") for frame in range(self.frames)]
        cols, rows = self.tiles(image_size)
        if cols * rows == 1:
            return [PatchGrid(self.side, self.side, whole, label="image")]
        # The image is stretched to cols x rows tiles (no padding): tile boxes split it evenly.
        step_x, step_y = width / cols, height / rows
        grids = [
            PatchGrid(self.side, self.side, (col * step_x, row * step_y, (col + 1) * step_x, (row + 1) * step_y), label=f"tile {row},{col}")
            for row in range(rows) for col in range(cols)
        ]
        return grids + [PatchGrid(self.side, self.side, whole, label="thumbnail")]

    def unmodified_tokens(self, image_size, modality="image") -> int:
        return sum(self.selectable_tokens(image_size, modality))

    def arrange(self, kept, merged, with_cls, cls_fed, image_size, modality="image", compressed=True) -> FeedPlan:
        # View after view, each its kept tokens then its merged ones; view v starts at v x 256.
        return views_in_sequence(kept, merged, False, False, stride=self.tokens_per_view)


def internvit_cls_attention(layer: torch.nn.Module, layer_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An InternViT layer's attention of token 0 (CLS) to every token, summed over heads
    (``[V, S]`` float32), and its keys averaged over heads (``[V, S, head_dim]`` float32),
    recomputed from the layer's projections as its eager attention computes them
    (``layernorm_before``, q / k projections, q_norm / k_norm, softmax in the model's dtype)."""
    attention = layer.attention
    normed = layer.layernorm_before(layer_input)
    views, length, _ = normed.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    query = attention.q_norm(attention.q_proj(normed[:, :1])).view(views, 1, heads, head_dim).transpose(1, 2)
    keys = attention.k_norm(attention.k_proj(normed)).view(views, length, heads, head_dim).transpose(1, 2)
    weights = torch.softmax(torch.matmul(query, keys.transpose(2, 3)) * attention.scale, dim=-1)
    return weights[:, :, 0, :].float().sum(dim=1), keys.mean(dim=1).float()


def _side(value) -> int:
    """One side of a square size given as an int or a (height, width) pair."""
    if isinstance(value, (list, tuple)):
        if value[0] != value[1]:
            raise ValueError(f"InternVL tiles are square; got a size of {list(value)}")
        return int(value[0])
    return int(value)


def _run_spans(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in ``mask``, in order."""
    padded = torch.cat([mask.new_zeros(1), mask, mask.new_zeros(1)]).int()
    edges = padded.diff()
    starts, stops = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    return list(zip(starts.tolist(), (stops - starts).tolist()))


def _token_views(origin: torch.Tensor, per_view: int) -> torch.Tensor:
    """The view of each fed token from its origin; a token the unmodified model does not have
    (origin -1, e.g. merged) belongs to the view of the token before it."""
    views = torch.where(origin >= 0, origin // per_view, -1)
    for i in range(1, views.numel()):
        if views[i] < 0:
            views[i] = views[i - 1]
    return views.clamp(min=0)


def _framewise(video_processor) -> bool:
    """The torchvision-free stand-in (the image processor on every frame)."""
    from prunesid.family_kit.processors import FramewiseVideoProcessor

    return isinstance(video_processor, FramewiseVideoProcessor)


# The keys of a video processor's settings that decide a frame's pixels, as an image processor reads them.
FRAME_SETTINGS = ("size", "resample", "do_convert_rgb", "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")


def frames_stand_in(model: str, images) -> FramewiseVideoProcessor:
    """InternVL's video processor without torchvision: every frame resized whole by the image
    processor with tiling off, frames sampled at the centres of equal spans. Its settings are the
    checkpoint's video processor's where it keeps them (video_preprocessor_config.json), else
    preprocessor_config.json's, as transformers falls back to that file: OpenGVLab/InternVL3-1B-hf
    is reported without a video file, its video processor then 448 px with ImageNet mean and std.
    Keys the video file lacks keep the image processor's."""
    settings = {key: value for key, value in video_settings(model).items() if key in FRAME_SETTINGS}
    frames = type(images).from_dict({**images.to_dict(), **settings, "crop_to_patches": False})
    return FramewiseVideoProcessor(frames, "centred")


stand_in_video_processor("InternVLProcessor", frames_stand_in)
