"""The press interface: what every compression method implements.

A press is a method's settings as a small frozen dataclass (hashable: it doubles as a cache
key). Its one job is :meth:`Press.compress`: a batch of encoded views in
(:class:`VisionTokens`), a :class:`prunesid.Compression` out. It knows nothing of models:
the VLM adapters build the VisionTokens and lay the result out for the language model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch

from prunesid.compression import Compression


@dataclass
class VisionTokens:
    """A batch of B views (images, tiles or frames) as a press sees them."""

    features: torch.Tensor  # [B, T, D] tokens a press chooses from (no CLS)
    importance: torch.Tensor | None = None  # [B, T] CLS attention summed over heads, None without CLS
    valid: torch.Tensor | None = None  # [B, T] bool: tokens that may be kept (None: all)
    cls_slot: bool = False  # the tower has a CLS token and the family can pass it through
    preset: str = "llava"  # the family's selection preset (presets.py)
    grid_shapes: list[tuple[int, int]] | None = None  # per view (rows, cols): token i sits at divmod(i, cols)
    keys: torch.Tensor | None = None  # [B, T, d] the feature layer's attention keys, mean over heads (VisionZip)
    project: Callable[[torch.Tensor], torch.Tensor] | None = None  # [n, D] -> [n, H]: into the LLM's input space

    @property
    def num_views(self) -> int:
        return self.features.shape[0]


class Press(ABC):
    """Base of every method. Subclasses are frozen dataclasses with a ``budget`` field (the
    visual tokens the LLM receives per view) and validate their fields in ``__post_init__``."""

    name: str = "press"
    budget: int

    @abstractmethod
    def compress(self, tokens: VisionTokens) -> Compression:
        """Decide, for every view of ``tokens``, what the language model receives."""

    def reserved(self, tokens: VisionTokens) -> int:
        """Budget slots taken by tokens passed through untouched (the CLS, where kept)."""
        return int(bool(getattr(self, "keep_cls", False)) and tokens.cls_slot)


PRESSES: dict[str, type[Press]] = {}


def register_press(name: str) -> Callable[[type[Press]], type[Press]]:
    """Make a press available by name (CLI ``--method``, the demo's method switch)."""

    def register(cls: type[Press]) -> type[Press]:
        cls.name = name
        PRESSES[name] = cls
        return cls

    return register
