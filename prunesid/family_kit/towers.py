"""CLIP / SigLIP-style vision towers as LLaVA models use them: hidden states of the feature
layer(s), the CLS token handled as the model's ``vision_feature_select_strategy`` says, and
the CLS attention row as importance."""

from __future__ import annotations

import torch

from prunesid.family_kit.base import VisionOutput
from prunesid.family_kit.importance import cls_attention_and_keys, has_cls_token, tower_layers

STRATEGIES = ("default", "full")


def check_strategy(vision_tower, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"vision_feature_select_strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy == "default" and not has_cls_token(vision_tower):
        # The model would drop the first *patch*: a configuration we cannot mirror faithfully.
        raise ValueError(
            "vision_feature_select_strategy 'default' drops the tower's first token, but this tower has no CLS "
            "token (the model would drop a real patch); use a checkpoint configured with 'full'"
        )


def encode_views(vision_tower, views: torch.Tensor, feature_layer, strategy: str) -> VisionOutput:
    """``views`` ``[V, C, H, W]`` through the tower; CLS split off when the tower has one.

    The unmodified model feeds the CLS to the LLM only under strategy ``"full"``
    (``cls_fed``); under ``"default"`` it strips it.
    """
    out = vision_tower(views, output_hidden_states=True, return_dict=True)
    hidden = out.hidden_states
    layers = feature_layer if isinstance(feature_layer, (list, tuple)) else [feature_layer]
    indices = [layer % len(hidden) for layer in layers]
    selected = torch.cat([hidden[i] for i in indices], dim=-1)
    if not has_cls_token(vision_tower):
        return VisionOutput(features=selected, cls=None, importance=None, cls_fed=False)
    importance = keys = None
    encoder_layers = tower_layers(vision_tower)
    if encoder_layers is not None and indices[-1] >= 1:
        # The layer whose output is the feature layer; its input is one hidden state earlier.
        importance, keys = cls_attention_and_keys(encoder_layers[indices[-1] - 1], hidden[indices[-1] - 1])
        importance, keys = importance[:, 1:], keys[:, 1:]
    return VisionOutput(
        features=selected[:, 1:], cls=selected[:, 0], importance=importance, cls_fed=strategy == "full", keys=keys
    )
