"""The built-ins' tokenizer: byte-level tokens after a family's special tokens, built in memory."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast


def byte_level_tokenizer(special_tokens: list[str], unk_token: str | None = None, **named) -> PreTrainedTokenizerFast:
    """Any text round-trips (one token per byte, no merges); ``special_tokens`` come first, and
    ``named`` are the tokenizer's own arguments (eos_token, pad_token, model_max_length, ...)."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(special_tokens + byte_chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk_token))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(special_tokens)
    return PreTrainedTokenizerFast(tokenizer_object=core, **({"unk_token": unk_token} if unk_token else {}), **named)
