"""The NMS engine: greedy NMS resolved on blocks of group members, without a T x T matrix
and (on a GPU) without reading anything back inside a loop.

Greedy NMS keeps token j exactly when no *kept* token of its group that is more important
has similarity > tau with it. Each group of each view becomes a block of its tokens in
importance order, padded to one of a few lengths; the conflicts inside a block (i precedes
j and is more similar than tau) are resolved by propagation in rounds rather than token by
token.
"""

from __future__ import annotations

import torch

from prunesid import devices
from prunesid.selection.ranking import rank_within_groups


def _block_lengths(longest: int, device) -> torch.Tensor:
    """Padded lengths of NMS blocks: 0, 16, 32, 48, 64, then powers of two and one and a
    half times them (96, 128, 192, 256, ...) up to ``longest``: few lengths, little padding."""
    lengths = [0, 16, 32, 48, 64]
    while lengths[-1] < longest:
        last = lengths[-1]
        lengths.append(last * 3 // 2 if last & (last - 1) == 0 else last * 4 // 3)
    return torch.tensor(lengths, device=device)


def greedy_nms_survivors(xn, group_of, rank, takeable, tau, num_groups=None):
    """[B, T] bool survivors. Every group of every view is a block of its tokens in
    importance order, padded to one of a few lengths (_block_lengths); blocks of the same
    length are resolved together, so similarities are computed only inside groups (the sum
    of the padded n_g^2 per view, never a T x T matrix)."""
    batch, num_tokens, width = xn.shape
    device = xn.device
    if num_groups is None:  # (K, when the caller has not said: one read from the device)
        num_groups = int(group_of.max()) + 1
    sizes = torch.zeros(batch, num_groups, dtype=torch.long, device=device)
    sizes.scatter_add_(1, group_of, torch.ones_like(group_of))
    ladder = _block_lengths(num_tokens, device)
    padded = ladder[torch.searchsorted(ladder, sizes)]
    # Number the blocks of each padded length (on the host: B x K small integers).
    lengths: dict[int, int] = {}
    ordinal = []
    for row in padded.tolist():
        ordinal.append([])
        for length in row:
            ordinal[-1].append(lengths.get(length, 0))
            lengths[length] = lengths.get(length, 0) + 1
    token_length = padded.gather(1, group_of)
    token_slot = torch.tensor(ordinal, device=device).gather(1, group_of) * token_length
    token_slot = (token_slot + rank_within_groups(group_of, rank)).flatten()
    token_length = token_length.flatten()
    spare = batch * num_tokens  # stands for an empty slot: untakeable, and kept nowhere
    tokens = torch.arange(spare, device=device)
    features = xn.reshape(spare, width)
    takeable_flat = torch.cat([takeable.flatten(), takeable.new_zeros(1)])
    image_tau = tau.repeat_interleave(num_tokens)

    classes = []
    for length, count in sorted(lengths.items()):
        if length == 0:
            continue
        slots = count * length
        slot = torch.where(token_length == length, token_slot, slots)  # other tokens: one extra slot
        members = torch.full((slots + 1,), spare, dtype=torch.long, device=device)
        members = members.scatter(0, slot, tokens)[:slots]
        block = features.index_select(0, members.clamp(max=spare - 1)).view(count, length, width)
        similarity = torch.bmm(block, block.transpose(1, 2))
        block_takeable = takeable_flat[members].view(count, length)
        block_tau = image_tau[members.view(count, length)[:, 0]]  # slot 0: the group's leader
        order = torch.arange(length, device=device)
        earlier = order[:, None] < order[None, :]  # (bool triu is a slow path on CPU)
        conflicts = (similarity > block_tau[:, None, None]) & earlier & block_takeable[:, :, None]
        classes.append((members, conflicts.float(), block_takeable))
    classes = _merge_classes(classes, spare, batch * num_tokens * num_tokens)

    if devices.waits_are_free(device):
        resolved = [resolve_greedy_nms(conflicts, block_takeable) for _, conflicts, block_takeable in classes]
    else:  # one wait for the device, for the round counts of all classes
        bounds = torch.stack([nms_round_bound(c, t) for _, c, t in classes]).tolist()
        resolved = [greedy_nms_rounds(c, t, bound) for (_, c, t), bound in zip(classes, bounds)]
    kept = torch.zeros(spare + 1, dtype=torch.bool, device=device)
    for (members, _, _), block_kept in zip(classes, resolved):
        kept = kept.scatter(0, members, block_kept.flatten())
    return kept[:spare].view(batch, num_tokens)


def _merge_classes(classes, spare: int, budget: int):
    """Blocks of neighbouring lengths padded to the longest of them and stacked, so that one
    loop of rounds resolves them together: all of them when that takes at most ``budget``
    entries, else classes (ascending lengths) join a stack while its padded size stays
    within twice the size of its parts (so memory at most doubles)."""
    stacks, current = [], []

    def size(parts, length):
        return sum(c.shape[0] for _, c, _ in parts) * length * length

    if not classes or size(classes, classes[-1][1].shape[-1]) <= budget:
        if len(classes) < 2:
            return classes
        return [classes[0] if len(classes) == 1 else _stack_blocks(classes, spare)]
    for part in classes:
        length = part[1].shape[-1]
        joined = current + [part]
        if current and size(joined, length) > 2 * sum(c.numel() for _, c, _ in joined):
            stacks.append(current)
            joined = [part]
        current = joined
    stacks.append(current)
    return [parts[0] if len(parts) == 1 else _stack_blocks(parts, spare) for parts in stacks]


def _stack_blocks(parts, spare: int):
    longest = parts[-1][1].shape[-1]
    count = sum(c.shape[0] for _, c, _ in parts)
    members = parts[0][0].new_full((count, longest), spare)
    conflicts = parts[0][1].new_zeros(count, longest, longest)
    takeable = parts[0][2].new_zeros(count, longest)
    start = 0
    for part_members, part_conflicts, part_takeable in parts:
        blocks, length = part_takeable.shape
        members[start : start + blocks, :length] = part_members.view(blocks, length)
        conflicts[start : start + blocks, :length, :length] = part_conflicts
        takeable[start : start + blocks, :length] = part_takeable
        start += blocks
    return members.flatten(), conflicts, takeable


def resolve_greedy_nms(conflicts: torch.Tensor, takeable: torch.Tensor) -> torch.Tensor:
    """Survivors of greedy NMS given conflicts[b, i, j] = 1 where i precedes j and would
    discard it. Tokens are decided in rounds; undecided tokens always remain at the head of
    some chain, so each round decides at least one token.

    On the CPU the rounds stop as soon as every token is decided. Elsewhere (a GPU) they run
    a number of times fixed before the loop, so that the loop never waits for the device:
    a token is decided by the round after its longest chain of possible discarders, and
    such a chain only passes through tokens that something can discard."""
    if devices.waits_are_free(conflicts.device):
        return greedy_nms_rounds(conflicts, takeable, None)
    return greedy_nms_rounds(conflicts, takeable, int(nms_round_bound(conflicts, takeable)))


def nms_round_bound(conflicts: torch.Tensor, takeable: torch.Tensor) -> torch.Tensor:
    """Rounds that decide every token (a 0-dim tensor, read back by the caller): one more
    than the longest chain of possible discarders, which passes only through tokens that
    something can discard."""
    can_be_discarded = (conflicts.amax(dim=1) > 0) & takeable
    return can_be_discarded.sum(1).max() + 1


def greedy_nms_rounds(conflicts: torch.Tensor, takeable: torch.Tensor, rounds: int | None) -> torch.Tensor:
    """The rounds of :func:`resolve_greedy_nms`: until all are decided (``rounds=None``) or
    exactly ``rounds`` times (enough when it bounds the longest chain, plus one)."""
    kept = torch.zeros_like(takeable)
    undecided = takeable.clone()
    into = conflicts.transpose(1, 2)  # into[b, j, i]: i can discard j
    state = torch.empty(*takeable.shape, 2, dtype=conflicts.dtype, device=conflicts.device)
    done = 0
    while (rounds is None and bool(undecided.any())) or (rounds is not None and done < rounds):
        state[..., 0] = kept
        state[..., 1] = undecided
        votes = torch.bmm(into, state)  # [..., 0]: kept discarders, [..., 1]: undecided ones
        free = undecided & (votes[..., 0] == 0)  # the others are discarded
        kept |= free & (votes[..., 1] == 0)
        undecided = free & (votes[..., 1] > 0)
        done += 1
    return kept
