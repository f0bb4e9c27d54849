"""The offline built-ins as a checkpoint vLLM's CPU build serves (tests, benchmarks/serving.py).

vLLM's CPU attention kernels take head sizes of 32 and more; the built-ins' language model
has 4 query heads of 16 (2 key/value heads). The copy written here reads the same weights
as 2 query heads of 32 sharing 1 key/value head (the projections keep their shapes), so
vLLM and the library's transformers path load one identical checkpoint from the same
directory (M-RoPE sections widened alike, :func:`_widen_mrope`). The CLIP weights keep the Hub's ``vision_tower.vision_model.`` names vLLM's
loader expects (the built-ins are written in the llava-hf layout). Qwen3.5's linear-attention
heads are read as heads vLLM's CPU Gated DeltaNet takes (:func:`_widen_linear_attention`), and
text-config keys vLLM reads but transformers' config classes drop are written back with the
released checkpoints' values (``RELEASE_TEXT_KEYS``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

ENGINE_HEADS = {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}
GDN_HEAD = 64  # vLLM's CPU Gated DeltaNet kernel takes linear-attention heads of 64 or 128
# Text-config keys vLLM reads that transformers' config classes drop from the built-ins, with
# the value the released checkpoints write (Qwen3-VL-MoE's config.json has norm_topk_prob:
# true; transformers' Qwen3-VL-MoE router renormalises the top-k weights unconditionally).
RELEASE_TEXT_KEYS = {"qwen3_vl_moe_text": {"norm_topk_prob": True}}


def _widen_mrope(config: dict, factor: int) -> None:
    """M-RoPE splits each head's rotary frequencies into (t, h, w) sections: wider heads
    take proportionally wider sections (both backends read the same rewritten config)."""
    for holder in (config, config.get("text_config") or {}):
        for key in ("rope_scaling", "rope_parameters"):
            rope = holder.get(key)
            if isinstance(rope, dict) and "mrope_section" in rope:
                rope["mrope_section"] = [section * factor for section in rope["mrope_section"]]


def _widen_head_norms(directory: Path, head: int, factor: int) -> None:
    """Per-head query / key norms (Qwen3) of ``head`` weights are tiled to the wider heads, in
    the checkpoint both backends load (the model read this way is another tiny random model,
    the same one for both)."""
    from safetensors.torch import load_file, save_file

    if factor == 1:
        return
    for shard in directory.glob("*.safetensors"):
        tensors = load_file(shard)
        names = [name for name, value in tensors.items() if name.endswith(("self_attn.q_norm.weight", "self_attn.k_norm.weight")) and value.shape == (head,)]
        if names:
            tensors.update({name: tensors[name].repeat(factor) for name in names})
            save_file(tensors, shard, metadata={"format": "pt"})


def _widen_linear_attention(text: dict, directory: Path) -> None:
    """vLLM's CPU Gated DeltaNet kernel (Qwen3.5's linear-attention layers) takes heads of 64
    or 128 only; the built-ins' are 16 wide. The copy reads them as one key head and one value
    head of GDN_HEAD: the value projection as it is (its width is GDN_HEAD), the query and key
    projections (and their conv channels) tiled to GDN_HEAD, the per-value-head gates cut to
    the first head and the output norm tiled -- another tiny random model, the one both
    backends load."""
    import torch
    from safetensors.torch import load_file, save_file

    head = text.get("linear_key_head_dim")
    if not head or head in (64, 128):
        return
    key_width = text["linear_num_key_heads"] * head
    value_width = text["linear_num_value_heads"] * text["linear_value_head_dim"]
    if value_width != GDN_HEAD or GDN_HEAD % key_width:
        raise ValueError(f"linear-attention widths {key_width} / {value_width} cannot be read as heads of {GDN_HEAD}")
    tile = GDN_HEAD // key_width
    text.update(linear_key_head_dim=GDN_HEAD, linear_value_head_dim=GDN_HEAD, linear_num_key_heads=1, linear_num_value_heads=1)

    def widened(mixed):  # [q; k; v] rows or channels: q and k tiled
        query, key, value = mixed.split([key_width, key_width, value_width])
        rest = [1] * (mixed.dim() - 1)
        return torch.cat([query.repeat(tile, *rest), key.repeat(tile, *rest), value])

    for shard in directory.glob("*.safetensors"):
        tensors = load_file(shard)
        for name, value in list(tensors.items()):
            if ".linear_attn." not in name:
                continue
            if name.endswith(("in_proj_qkv.weight", "conv1d.weight")):
                tensors[name] = widened(value).contiguous()
            elif name.endswith(("A_log", "dt_bias", "in_proj_a.weight", "in_proj_b.weight")):
                tensors[name] = value[:1].clone()
            elif name.endswith("linear_attn.norm.weight"):
                tensors[name] = value.repeat(GDN_HEAD // value.shape[0])
        save_file(tensors, shard, metadata={"format": "pt"})


def engine_checkpoint(builtin: str = "tiny-random") -> Path:
    """A directory holding the built-in ``builtin`` with heads vLLM's CPU kernels take."""
    from prunesid.family_kit import builtin_directory

    source = builtin_directory(builtin)
    # Keyed by this file too: a change of the rewrite writes a new copy.
    version = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
    target = Path(tempfile.gettempdir()) / "prunesid-vllm" / f"{source.name}-{version}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=target.parent))
    shutil.copytree(source, scratch, dirs_exist_ok=True)
    config = json.loads((scratch / "config.json").read_text())
    text = config.get("text_config", config)  # the Qwen-VL Hub layouts keep the LLM's fields at the top
    if text["hidden_size"] != ENGINE_HEADS["num_attention_heads"] * ENGINE_HEADS["head_dim"]:
        raise ValueError(f"built-in {builtin!r}: a language model of width {text['hidden_size']} cannot be read as {ENGINE_HEADS}")
    old_head = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    text.update(ENGINE_HEADS)
    _widen_linear_attention(text, scratch)
    for key, value in RELEASE_TEXT_KEYS.get(text.get("model_type"), {}).items():
        text.setdefault(key, value)
    _widen_mrope(config, ENGINE_HEADS["head_dim"] // old_head)
    _widen_head_norms(scratch, old_head, ENGINE_HEADS["head_dim"] // old_head)
    (scratch / "config.json").write_text(json.dumps(config, indent=2))
    try:
        scratch.rename(target)  # atomic: a directory that exists is complete
    except OSError:  # another process wrote it first
        shutil.rmtree(scratch, ignore_errors=True)
    return target
