"""Where the engine places a Qwen-VL prompt's kept visual tokens (M-RoPE), without vLLM.

vLLM computes a request's M-RoPE positions before any encoding and revises them after
encoding only through a model's ``recompute_mrope_positions``, which receives each input's
embeddings (for the prefill chunk being run) and the prompt's current positions. So each
input's embeddings carry, appended as extra channels, what placing them needs: per token its
unpruned (t, h, w) position relative to the input's first position, the input's unpruned
extent (what the text after it continues from) and the token's index in its placeholder run
(a run may be split across prefill chunks). :func:`place` writes them where they belong.

The positions are those of the transformers path (``get_rope_index`` of the unpruned ids,
sliced at the tokens fed): a kept token at ``base + (t, h, w)``, the text after an input at
``base + extent`` onwards, ``base`` being one past the position of the token before the run.

Every value is stored as two channels (``value // 256``, ``value % 256``) so that it is exact
in any embedding dtype (bfloat16 holds integers up to 256 exactly).
"""

from __future__ import annotations

import torch

FIELDS = ("t", "h", "w", "extent", "index")
RADIX = 256
CHANNELS = 2 * len(FIELDS)
LARGEST = RADIX * RADIX - 1


def grid_positions(groups: int, rows: int, cols: int, interval: float = 1.0) -> torch.Tensor:
    """``[groups x rows x cols, 3]`` (t, h, w) of every token of an input, relative to its
    first position, in the order the tower outputs them; t is ``group x interval`` rounded
    down, as transformers' ``get_vision_position_ids`` computes it."""
    t = (torch.arange(groups) * interval).long()
    h, w = torch.arange(rows), torch.arange(cols)
    grid = torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)


def kept_channels(origin: torch.Tensor, grid: tuple[int, int, int], interval: float, dtype: torch.dtype, device=None) -> torch.Tensor:
    """The channels of one input's fed tokens from their ``origin`` in its unpruned run
    (``grid``: groups, rows, cols of merged tokens), the input one placeholder run: a new
    token (origin -1, a merged one) sits at the input's last position, as in the transformers
    path; the text after the input continues ``max(rows, cols)`` on, as transformers'
    ``get_rope_index`` does."""
    groups, rows, cols = grid
    everything = grid_positions(groups, rows, cols, interval)
    origin = origin.cpu().long()
    relative = everything[torch.where(origin >= 0, origin, everything.shape[0] - 1)]
    return position_channels(relative, max(rows, cols), dtype, device)


def group_channels(origin: torch.Tensor, grid: tuple[int, int, int], dtype: torch.dtype, device=None) -> torch.Tensor:
    """As :func:`kept_channels` for a clip fed as one placeholder run per temporal group
    (Qwen3-VL: each group after its timestamp): every group placed as an image of its own
    (t = 0), the index counted within the group's run, a new token at its group's last position."""
    from prunesid.families.qwen_vl.adapter import _token_views

    groups, rows, cols = grid
    per_group = rows * cols
    origin = origin.cpu().long()
    group = _token_views(origin, per_group)
    within = torch.where(origin >= 0, origin - group * per_group, per_group - 1)
    relative = torch.stack([torch.zeros_like(within), within // cols, within % cols], dim=1)
    starts = torch.searchsorted(group, torch.arange(groups))  # fed in group order
    index = torch.arange(origin.numel()) - starts[group]
    return position_channels(relative, max(rows, cols), dtype, device, index)


def position_channels(relative: torch.Tensor, extent: int, dtype: torch.dtype, device=None, index: torch.Tensor | None = None) -> torch.Tensor:
    """``[n, CHANNELS]`` for ``n`` tokens of one input: their ``relative [n, 3]`` positions,
    the input's ``extent`` and each token's ``index`` in its placeholder run (default: one run)."""
    count = relative.shape[0]
    index = torch.arange(count) if index is None else index.long()
    values = torch.cat(
        [relative.long(), torch.full((count, 1), int(extent)), index[:, None]], dim=1,
    )
    if int(values.min()) < 0 or int(values.max()) > LARGEST:
        raise ValueError(f"M-RoPE positions must lie in [0, {LARGEST}] within one input, got {int(values.min())}..{int(values.max())}")
    split = torch.stack([values // RADIX, values % RADIX], dim=-1).reshape(count, CHANNELS)
    return split.to(device=device, dtype=dtype)


def split_channels(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """One input's embeddings with channels (or a slice of them) -> (the embeddings, the
    tokens' relative positions ``[n, 3]``, the input's extent, each token's index in its run)."""
    values = embeds[:, -CHANNELS:].float().round().long().reshape(-1, len(FIELDS), 2)
    values = values[..., 0] * RADIX + values[..., 1]
    extent = int(values[0, 3]) if values.shape[0] else 0
    return embeds[:, :-CHANNELS], values[:, :3], extent, values[:, 4]


def provisional_positions(input_ids, media_ids: tuple[int, ...]) -> tuple[torch.Tensor, int]:
    """The positions a request starts with, before any input is encoded: text counts up,
    every visual token holds the position of the text before it (one less than where the
    text after it would go). :func:`place` relies on exactly that."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    text = (~torch.isin(ids, torch.tensor(media_ids))).long()
    positions = (torch.cumsum(text, 0) - 1).expand(3, -1).clone()
    return positions, int(positions.max()) + 1 - ids.numel() if ids.numel() else 0


def runs_of(inputs: list[tuple[torch.Tensor, int, torch.Tensor]]) -> list[tuple[torch.Tensor, int, int]]:
    """Each input's tokens cut where their index starts again (a clip fed as one run per
    temporal group): (relative, extent, first index) per piece of one placeholder run."""
    pieces = []
    for relative, extent, index in inputs:
        starts = [0] + [i for i in range(1, index.numel()) if int(index[i]) == 0]
        for begin, end in zip(starts, starts[1:] + [index.numel()]):
            pieces.append((relative[begin:end], extent, int(index[begin])))
    return pieces


def place(
    input_ids, inputs: list[tuple[torch.Tensor, int, int]], positions: torch.Tensor, num_computed_tokens: int,
    media_ids: tuple[int, ...],
) -> tuple[torch.Tensor, int]:
    """The prompt's positions ``[3, N]`` with ``inputs`` (each ``(relative [n, 3], extent,
    first index)`` of the tokens of one placeholder run in this prefill chunk, in prompt
    order: :func:`runs_of`) placed, and the rope delta (the next position less ``N``).

    Invariant (kept by :func:`provisional_positions` and by every call): a visual token not
    yet placed holds one less than the position the text after the token before it gets.
    A run's first tokens therefore find ``base`` at ``positions[start] + 1``; the rest of a run
    split across chunks finds it at ``positions[start] + 1 - extent`` (the fill below)."""
    count = positions.shape[-1]
    if not inputs:
        return positions, int(positions.max()) + 1 - count if count else 0
    ids = torch.as_tensor(input_ids, dtype=torch.long, device="cpu")
    media = torch.isin(ids, torch.tensor(media_ids))
    text = (~media).long().to(positions.device)
    positions = positions.clone()
    cursor = num_computed_tokens
    for relative, extent, first in inputs:
        if first > 0:  # the rest of a run begun in an earlier chunk
            start = cursor
            if not bool(media[start]):
                raise ValueError(f"a visual input continues at prompt index {start}, which holds no placeholder")
            base = int(positions[0, start]) + 1 - extent
        else:
            ahead = media[cursor:].nonzero()
            if ahead.numel() == 0:
                raise ValueError(f"a visual input has no placeholder run after prompt index {cursor}")
            start = cursor + int(ahead[0])
            base = int(positions[0, start]) + 1
        stop = start + relative.shape[0]
        if stop > count or not bool(media[start:stop].all()):
            raise ValueError(f"a visual input's {relative.shape[0]} tokens do not fit the placeholder run at prompt index {start}")
        positions[:, start:stop] = relative.T.to(positions.device) + base
        # Everything after continues from the unpruned input's extent (text counts up, visual
        # tokens not yet placed hold one less than the text after them would get).
        positions[:, stop:] = torch.cumsum(text[stop:], 0) + base + extent - 1
        cursor = stop
    return positions, int(positions.max()) + 1 - count
