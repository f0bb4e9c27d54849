"""The baselines inside the models: merged tokens reach the language model where they
belong, VisionZip measures similarity in the tower's keys, DivPrune in the projected
space, towers without CLS are handled as documented; the floors' own promises."""

from __future__ import annotations

import pytest
import torch

from prunesid import DivPrune, PruneSID, RandomPrune, UniformPrune, VisionTokens, VisionZip
from tests.conftest import scene
from tests.conftest import fed_to_language_model as _fed_to_language_model
from tests.vlm.test_vlm_siglip import siglip_vlm  # noqa: F401  (the tiny SigLIP LLaVA)

QUESTION = "What is in the picture?"




def test_visionzip_feeds_cls_dominant_then_merged_tokens_to_llava(tiny_vlm, picture):
    press = VisionZip(budget=64)
    embeds, reply = _fed_to_language_model(tiny_vlm, lambda: tiny_vlm.chat(picture, QUESTION, press=press, max_new_tokens=1))
    result = reply.selections[0]
    assert reply.visual_tokens == [64] and result.reserved == 1
    assert result.indices[0].numel() == 53 and result.merged[0].shape[0] == 10  # the authors' 54 + 10
    encoded = tiny_vlm.encode(picture)
    prepared = tiny_vlm.prepare(picture, QUESTION, press)
    positions = prepared.input_ids[0] == tiny_vlm.placeholder_token_id
    projector = tiny_vlm.model.model.multi_modal_projector
    with torch.inference_mode():
        wanted = projector(torch.cat([encoded.cls[:1], encoded.features[0, result.indices[0]], result.merged[0]])[None])[0]
    torch.testing.assert_close(embeds[0, positions], wanted, rtol=1e-5, atol=1e-6)
    # The merged tokens are new: the run marks them as having no place in the unmodified run.
    run = prepared.runs[0]
    assert (run.origin[-10:] == -1).all() and (run.origin[1:54] == result.indices[0].cpu() + 0).all()


def test_visionzip_merged_tokens_cover_every_remaining_patch(tiny_vlm, picture):
    result = tiny_vlm.compress(tiny_vlm.encode(picture), VisionZip(budget=64))[0]
    merged_from, kept = result.merged_from[0], result.kept[0]
    # Every patch is either dominant (kept) or in exactly one contextual token; each anchor in its own.
    assert bool(((merged_from >= 0) ^ kept).all())
    assert sorted(merged_from[result.targets[0]].tolist()) == list(range(10))
    # A contextual token is its anchor plus the mean of the patches that joined it.
    features = tiny_vlm.encode(picture).features[0]
    for j in range(10):
        members = (merged_from == j).nonzero().flatten()
        anchor = members[result.targets[0, members]]
        others = members[~result.targets[0, members]]
        expected = features[anchor[0]] + (features[others].mean(0) if others.numel() else 0)
        torch.testing.assert_close(result.merged[0][j], expected, rtol=1e-5, atol=1e-5)
    assert result.to_dict()["num_merged"] == 10


def test_visionzip_on_llava_next_places_merged_tokens_per_view(tiny_next_vlm):
    image = scene(640, 480)
    press = VisionZip(budget=32)
    embeds, reply = _fed_to_language_model(tiny_next_vlm, lambda: tiny_next_vlm.chat(image, QUESTION, press=press, max_new_tokens=1))
    result = reply.selections[0]
    assert result.reserved == 0  # LLaVA-NeXT's packing has no CLS slot
    assert [int(i.numel()) + int(m.shape[0]) for i, m in zip(result.indices, result.merged)] == [32] * 5
    assert [m.shape[0] for m in result.merged] == [5] * 5
    prepared = tiny_next_vlm.prepare(image, QUESTION, press)
    fed = embeds[0, prepared.input_ids[0] == tiny_next_vlm.placeholder_token_id]
    family = tiny_next_vlm.family
    encoded = tiny_next_vlm.encode(image)
    with torch.inference_mode():
        base = family.project(torch.cat([encoded.features[0, result.indices[0]], result.merged[0]]))
        tiles_merged = family.project(torch.cat(list(result.merged[1:])))
    # Base view first (its kept then its merged tokens), the tiles' merged tokens last.
    torch.testing.assert_close(fed[:32], base, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fed[-20:], tiles_merged, rtol=1e-5, atol=1e-6)
    # No kept tile token is lost to the padding, none of the merged ones covers padding.
    assert not bool((result.merged_from >= 0)[~encoded.valid].any())


def test_the_keys_are_the_feature_layers_keys_averaged_over_heads(tiny_vlm, picture):
    """VisionZip's similarity space, computed independently: the k_proj output of the layer
    whose output is the feature layer, split into heads and averaged (their metric)."""
    encoded = tiny_vlm.encode(picture)
    tower = tiny_vlm.family.vision_tower
    layers = tower.encoder.layers
    feature_layer = tiny_vlm.family.feature_layer % (len(layers) + 1)  # hidden_states index
    captured = []
    hook = layers[feature_layer - 1].self_attn.k_proj.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        with torch.inference_mode():
            tower(encoded.pixel_inputs["pixel_values"], output_hidden_states=True)
    finally:
        hook.remove()
    keys = captured[0]
    heads = tower.config.num_attention_heads
    expected = keys.view(keys.shape[0], keys.shape[1], heads, -1).mean(dim=2)[:, 1:]
    torch.testing.assert_close(encoded.keys, expected.float(), rtol=1e-5, atol=1e-6)
    assert tiny_vlm.vision_tokens([encoded]).keys.shape == expected.shape


def test_visionzip_merges_by_key_similarity(tiny_vlm, picture):
    encoded = tiny_vlm.encode(picture)
    tokens = tiny_vlm.vision_tokens([encoded])
    by_keys = VisionZip(budget=64).compress(tokens)
    by_features = VisionZip(budget=64).compress(VisionTokens(**{**tokens.__dict__, "keys": None}))
    assert by_keys.space == "keys" and by_features.space == "features"
    assert torch.equal(by_keys.indices[0], by_features.indices[0])  # dominant: attention only
    assert not torch.equal(by_keys.merged_from, by_features.merged_from)


def test_divprune_measures_distances_after_the_projector(tiny_vlm, picture):
    encoded = tiny_vlm.encode(picture)
    tokens = tiny_vlm.vision_tokens([encoded])
    projected = DivPrune(budget=48).compress(tokens)
    with torch.inference_mode():
        in_llm_space = tiny_vlm.family.project(encoded.features[0])[None]
    by_hand = DivPrune(budget=48).compress(VisionTokens(features=in_llm_space))
    tower = DivPrune(budget=48, space="tower").compress(tokens)
    assert projected.space == "projected" and tower.space == "tower"
    assert torch.equal(projected.indices[0], by_hand.indices[0])
    assert not torch.equal(projected.indices[0], tower.indices[0])
    assert projected.reserved == 0  # the authors select among the patch tokens only


def test_a_tower_without_cls(siglip_vlm):
    """SigLIP: VisionZip refuses (no CLS attention to rank by), the others run, and nobody
    passes a CLS through."""
    image = scene(400, 300)
    with pytest.raises(ValueError, match="CLS token's attention"):
        siglip_vlm.chat(image, "What is this?", press=VisionZip(budget=32), max_new_tokens=1)
    for press in (DivPrune(budget=32), RandomPrune(budget=32), UniformPrune(budget=32)):
        reply = siglip_vlm.chat(image, "What is this?", press=press, max_new_tokens=1)
        assert reply.visual_tokens == [32] and reply.selections[0].reserved == 0


# --- the floors ------------------------------------------------------------------------


def test_uniform_is_an_even_lattice():
    tokens = VisionTokens(features=torch.randn(1, 576, 8), grid_shapes=[(24, 24)])
    kept = UniformPrune(budget=64, keep_cls=False).compress(tokens).indices[0]
    rows, cols = (kept // 24).unique(), (kept % 24).unique()
    assert kept.numel() == 64 and rows.numel() == 8 and cols.numel() == 8
    assert set(torch.diff(rows).tolist()) == {3} and set(torch.diff(cols).tolist()) == {3}
    assert (rows[0], cols[0]) == (1, 1)  # the centre of the first 3 x 3 cell
    # A wide grid gets a wide lattice; every kept count is exact.
    wide = VisionTokens(features=torch.randn(1, 12 * 48, 8), grid_shapes=[(12, 48)])
    for budget in (1, 7, 50, 63, 200, 575):
        kept = UniformPrune(budget=budget, keep_cls=False).compress(wide).indices[0]
        assert kept.numel() == budget and kept.unique().numel() == budget
    kept = UniformPrune(budget=32, keep_cls=False).compress(wide).indices[0]
    assert (kept % 48).unique().numel() > (kept // 48).unique().numel()


def test_uniform_spreads_over_the_selectable_part_only():
    valid = torch.zeros(1, 576, dtype=torch.bool)
    valid.view(24, 24)[6:18, :] = True  # a letterboxed tile: rows 6..17 hold the image
    tokens = VisionTokens(features=torch.randn(1, 576, 8), valid=valid, grid_shapes=[(24, 24)])
    kept = UniformPrune(budget=24, keep_cls=False).compress(tokens).indices[0]
    assert kept.numel() == 24 and bool(valid[0, kept].all())
    assert (kept // 24).min() >= 6 and (kept // 24).max() <= 17 and (kept // 24).unique().numel() >= 3
    ragged = valid.clone()
    ragged[0, 6 * 24:7 * 24:2] = False  # holes where lattice points fall: they move to free neighbours
    kept = UniformPrune(budget=100, keep_cls=False).compress(VisionTokens(features=torch.randn(1, 576, 8), valid=ragged, grid_shapes=[(24, 24)])).indices[0]
    assert kept.numel() == 100 and kept.unique().numel() == 100 and bool(ragged[0, kept].all())


def test_uniform_needs_a_grid():
    with pytest.raises(ValueError, match="grid_shapes"):
        UniformPrune(budget=8).compress(VisionTokens(features=torch.randn(1, 40, 8)))
    kept = UniformPrune(budget=4, keep_cls=False).compress(VisionTokens(features=torch.randn(1, 36, 8))).indices[0]
    assert kept.tolist() == [7, 10, 25, 28]  # a square T is read as a square grid


def test_random_is_seeded_and_spread():
    tokens = VisionTokens(features=torch.randn(2, 576, 8))
    first = RandomPrune(budget=64, keep_cls=False).compress(tokens)
    again = RandomPrune(budget=64, keep_cls=False).compress(tokens)
    other = RandomPrune(budget=64, seed=1, keep_cls=False).compress(tokens)
    assert torch.equal(first.indices[0], again.indices[0])
    assert not torch.equal(first.indices[0], other.indices[0])
    assert torch.equal(first.indices[0], first.indices[1])  # a view's draw does not depend on the batch
    # Uniform over the tokens: over many seeds every token is drawn about as often.
    counts = torch.zeros(576)
    for seed in range(300):
        counts[RandomPrune(budget=64, seed=seed, keep_cls=False).compress(VisionTokens(features=torch.randn(1, 576, 2))).indices[0]] += 1
    expected = 300 * 64 / 576
    assert counts.min() > 0.3 * expected and counts.max() < 2.2 * expected


def test_presses_compare_at_the_same_budget_on_llava(tiny_vlm, picture):
    """Every method gives the LLM the same number of visual tokens at the same budget."""
    counts = {
        type(press).__name__: tiny_vlm.chat(picture, QUESTION, press=press, max_new_tokens=1).visual_tokens[0]
        for press in (PruneSID(budget=64), VisionZip(budget=64), DivPrune(budget=64), RandomPrune(budget=64), UniformPrune(budget=64))
    }
    assert set(counts.values()) == {64}, counts


@pytest.mark.parametrize("name", ["prunesid", "visionzip", "divprune", "random", "uniform"])
def test_every_press_compresses_each_frame_of_a_video(name):
    """Video-LLaVA: each frame is a view with its own budget (its CLS counted where passed)."""
    from pathlib import Path

    from prunesid import PRESSES, load_vlm
    from prunesid.vlm import BUILTIN_MODELS

    if "tiny-random-video-llava" not in BUILTIN_MODELS:
        pytest.skip("no Video-LLaVA built-in in this checkout")
    from prunesid.video import load_video

    vlm = load_vlm("tiny-random-video-llava")
    clip = load_video(Path(__file__).resolve().parents[2] / "assets" / "clip.mp4")
    reply = vlm.chat(clip, "What happens in the clip?", press=PRESSES[name](budget=17), max_new_tokens=1)
    result = reply.selections[0]
    merged = result.merged or [torch.zeros(0)] * result.num_views
    frames = vlm.encode(clip).num_views
    assert [result.reserved + int(i.numel()) + int(m.shape[0]) for i, m in zip(result.indices, merged)] == [17] * frames
    assert reply.visual_tokens == [17 * frames]


def test_visionzip_without_contextual_tokens_keeps_the_most_attended():
    generator = torch.Generator().manual_seed(2)
    tokens = VisionTokens(features=torch.randn(2, 36, 8, generator=generator), importance=torch.rand(2, 36, generator=generator))
    result = VisionZip(budget=8, contextual=0, keep_cls=False).compress(tokens)
    for view in range(2):
        assert torch.equal(result.indices[view], tokens.importance[view].topk(8).indices.sort().values)
        assert result.merged[view].shape == (0, 8)
    assert bool((result.merged_from == -1).all()) and not bool(result.targets.any())
