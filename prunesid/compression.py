"""Compression: what any press decided for a batch of B views, in one shape for every method.

A *view* is one row of the batch a press works on: an image (LLaVA-1.5, Qwen-VL), one of
LLaVA-NeXT's base view and tiles, or a video frame. Each view has T tokens, some of which
may be excluded from the start (``valid``: e.g. LLaVA-NeXT letterbox padding).

Every method keeps some of a view's tokens (``indices``); a merging method (VisionZip) also
returns new tokens (``merged``), each covering some of the others (``merged_from``). The
language model receives, per view: the reserved tokens (a passed-through CLS), the kept
tokens in ``indices`` order, then the merged tokens. Methods add their own diagnostics by
subclassing (PruneSID: :class:`prunesid.Selection`); ``viz`` draws from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F


@dataclass(kw_only=True)
class Compression:
    indices: list[torch.Tensor]  # per view: kept token indices (0..T-1), in output order
    valid: torch.Tensor  # [B, T] bool: tokens the press could choose from
    budget: torch.Tensor  # [B] long: tokens the LLM receives per view, reserved included
    reserved: int  # tokens passed through untouched per view (a CLS), counted in the budget
    method: str
    merged: list[torch.Tensor] | None = None  # per view [m, D]: merged tokens, in the tokens' space
    merged_from: torch.Tensor | None = None  # [B, T] long: merged token a token went into, -1 none

    # Per-token fields ([B, T]) and the value a token outside a subset takes (see embed).
    TOKEN_FIELDS: ClassVar[dict[str, Any]] = {"valid": False, "merged_from": -1}

    @property
    def num_views(self) -> int:
        """B: the rows of the batch (images, tiles or frames)."""
        return self.valid.shape[0]

    @property
    def tokens_per_view(self) -> int:
        """T: tokens of each view the press chose from (invalid ones included)."""
        return self.valid.shape[1]

    @property
    def kept(self) -> torch.Tensor:
        """[B, T] bool mask of kept tokens."""
        mask = torch.zeros_like(self.valid)
        for view, index in enumerate(self.indices):
            mask[view, index] = True
        return mask

    def output_counts(self) -> list[int]:
        """Tokens the LLM receives per view: reserved + kept + merged."""
        merged = [0] * self.num_views if self.merged is None else [m.shape[0] for m in self.merged]
        return [self.reserved + int(index.numel()) + extra for index, extra in zip(self.indices, merged)]

    def take(self, start: int, stop: int) -> "Compression":
        """Views ``start..stop-1`` of the batch, as the same kind of result."""
        if not 0 <= start < stop <= self.num_views:
            raise ValueError(f"take({start}, {stop}) is outside the batch of {self.num_views}")
        per_view = {
            f.name: getattr(self, f.name)[start:stop]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), (torch.Tensor, list))
        }
        return dataclasses.replace(self, **per_view)

    def first_tokens(self, num_tokens: int) -> "Compression":
        """The same result over tokens ``0..num_tokens-1`` only (dropping batch padding, which
        is never kept)."""
        fields = {name: getattr(self, name)[:, :num_tokens] for name in self.TOKEN_FIELDS if getattr(self, name) is not None}
        return dataclasses.replace(self, **fields)

    def embed(self, positions: torch.Tensor, num_tokens: int) -> "Compression":
        """This result, computed on a subset of each view's tokens, in the full index space.

        ``positions[b, i]`` is the full index of subset token ``i`` of view ``b`` (``[B, T']``).
        Tokens outside the subset take each per-token field's neutral value (not valid, group
        -1, score 0, ...): they took no part.
        """
        positions = positions.to(self.valid.device)
        if positions.shape != self.valid.shape:
            raise ValueError(f"positions must be {tuple(self.valid.shape)}, got {tuple(positions.shape)}")

        def spread(values: torch.Tensor, fill) -> torch.Tensor:
            full = torch.full((values.shape[0], num_tokens), fill, dtype=values.dtype, device=values.device)
            return full.scatter(1, positions, values)

        spread_fields = {
            name: spread(getattr(self, name), fill)
            for name, fill in self.TOKEN_FIELDS.items()
            if getattr(self, name) is not None
        }
        return dataclasses.replace(
            self, indices=[row[index] for row, index in zip(positions, self.indices)], **spread_fields
        )

    @classmethod
    def concat(cls, parts: list["Compression"]) -> "Compression":
        """Several results (same settings and T) as one batch, in order. Per-view tensors
        whose second dimension differs (e.g. per-group quotas) are zero-padded."""
        if not parts:
            raise ValueError("concat needs at least one result")
        first = parts[0]
        joined = {}
        for f in dataclasses.fields(first):
            values = [getattr(part, f.name) for part in parts]
            if isinstance(values[0], torch.Tensor):
                if values[0].dim() == 2 and f.name not in cls.TOKEN_FIELDS and f.name not in first.TOKEN_FIELDS:
                    width = max(value.shape[1] for value in values)
                    values = [F.pad(value, (0, width - value.shape[1])) for value in values]
                joined[f.name] = torch.cat(values)
            elif isinstance(values[0], list):
                joined[f.name] = [item for value in values for item in value]
        return dataclasses.replace(first, **joined)

    def to_dict(self, view: int = 0) -> dict[str, Any]:
        """JSON-friendly summary of one view."""
        index = self.indices[view]
        summary = {
            "method": self.method,
            "tokens": self.tokens_per_view,
            "selectable": int(self.valid[view].sum()),
            "budget": int(self.budget[view]),
            "reserved": self.reserved,
            "kept": index.tolist(),
            "num_kept": int(index.numel()),
            "visual_tokens": self.output_counts()[view],
        }
        if self.merged is not None:
            summary["num_merged"] = int(self.merged[view].shape[0])
            summary["merged_from"] = self.merged_from[view].tolist()
        return summary
