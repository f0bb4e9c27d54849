"""The plug-in's settings: the ``prunesid`` entry of a run's ``hf_overrides``, read and checked
before the engine serves anything (vLLM imports nothing here).

``{"method": "prunesid", "budget": 64, ...}``: ``method`` is a press of the registry
(:func:`prunesid.methods.registry.presses`), every other key one of its options. Every error
is a ValueError naming the setting as ``prunesid.<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from prunesid.methods.base import Press
from prunesid.family_kit.base import FamilyLayout, fed_per_view

CONFIG_KEY = "prunesid"  # the key of hf_overrides (and so of the model's config) holding the settings
DOCS = "docs/vllm.md"


def _declared_vllm() -> dict:
    from prunesid.family_kit import declarations

    return {model_type: declared for declared in declarations() for model_type in declared.vllm}


# The architecture each model type with a vLLM class registers, and the engine arguments it
# needs besides hf_overrides, as the families declare them.
_DECLARED = _declared_vllm()
ARCHITECTURES = {model_type: declared.vllm_class_path(model_type).split(":")[1] for model_type, declared in _DECLARED.items()}
CLASS_PATHS = {model_type: declared.vllm_class_path(model_type) for model_type, declared in _DECLARED.items()}
ENGINE_ARGUMENTS = {model_type: declared.vllm_engine_arguments for model_type, declared in _DECLARED.items() if declared.vllm_engine_arguments}


def engine_overrides(family: str = "llava", method: str = "prunesid", budget: int = 64, **options) -> dict:
    """The ``hf_overrides`` that turn a vLLM run of ``family`` compressed (checked here first)."""
    if family not in ARCHITECTURES:
        raise ValueError(f"family must be one of {list(ARCHITECTURES)}, got {family!r}")
    settings = {"method": method, "budget": budget, **options}
    press_from_settings(settings)
    return {"architectures": [ARCHITECTURES[family]], CONFIG_KEY: settings}


def engine_arguments(family: str = "llava") -> dict:
    """The engine arguments ``family``'s classes need besides ``hf_overrides`` (``LLM(...,
    **engine_arguments("qwen2_5_vl"))``; ``vllm serve``: ``--video-pruning-rate 0.5
    --no-enable-prefix-caching``); none for the LLaVA families and InternVL."""
    if family not in ARCHITECTURES:
        raise ValueError(f"family must be one of {list(ARCHITECTURES)}, got {family!r}")
    return dict(ENGINE_ARGUMENTS.get(family, {}))


def press_from_settings(settings) -> Press:
    """The press the settings name, its options checked against the registry's declarations."""
    from prunesid.methods.registry import build_press, presses

    if isinstance(settings, str):  # a config written to disk and read back as text
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError as error:
            raise ValueError(f"{CONFIG_KEY} must be a JSON object, got {settings!r}: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(
            f"{CONFIG_KEY} must be an object such as {{\"method\": \"prunesid\", \"budget\": 64}} in hf_overrides, got {settings!r}"
        )
    values = dict(settings)
    method = values.pop("method", None)
    known = list(presses())
    if method not in known:
        raise ValueError(f"{CONFIG_KEY}.method must be one of {known}, got {method!r}")
    return build_press(method, values, shown=lambda name: f"{CONFIG_KEY}.{name}")


@dataclass(frozen=True)
class EnginePress:
    """A run's press and the family's backend-neutral layout: what the front end sizes
    placeholders with and the engine compresses with."""

    press: Press
    layout: FamilyLayout

    @classmethod
    def checked(cls, settings, layout: FamilyLayout, image_size: tuple[int, int]) -> "EnginePress":
        """Every check a request could otherwise fail mid-flight, done once at start:
        a fixed budget, the inputs the press needs, a budget within the view's tokens."""
        if settings is None:
            raise ValueError(
                f"this architecture compresses with PruneSID but the run sets no {CONFIG_KEY} settings: add "
                f"\"{CONFIG_KEY}\": {{\"method\": ..., \"budget\": ...}} to hf_overrides ({DOCS})"
            )
        press = press_from_settings(settings)
        if not press.budget_is_fixed:
            raise ValueError(
                f"{CONFIG_KEY}: {type(press).__name__} with these settings ({_shown(settings)}) sets each image's budget from "
                "its content, but the engine sizes placeholders before encoding; use a fixed budget here, or send "
                f"embeddings from prunesid.vllm.client to an engine started with enable_mm_embeds=True ({DOCS})"
            )
        selectable = layout.selectable_tokens(image_size)
        try:
            fed_per_view(press, selectable, layout.cls_slot, layout.preset, layout.cls_attention)
        except ValueError as error:
            raise ValueError(f"{CONFIG_KEY}.method {press.name!r}: {error}") from None
        reserved = int(press.keep_cls and layout.cls_slot)
        most = max(selectable) + reserved
        if layout.preset == "llava" and press.budget > most:
            raise ValueError(
                f"{CONFIG_KEY}.budget {press.budget} exceeds the {most} tokens a view of this model has "
                f"({max(selectable)} patches{' + the CLS' if reserved else ''})"
            )
        return cls(press, layout)

    def fed_tokens(self, image_size: tuple[int, int]) -> int:
        return self.layout.fed_tokens(image_size, self.press)


def _shown(settings) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in dict(settings).items()) if isinstance(settings, dict) else repr(settings)
