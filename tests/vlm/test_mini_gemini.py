"""Mini-Gemini (MGM, MGM-HD) built natively: the built-ins are loaded from directories in the
original MGM checkpoint format (``prunesid.families.mini_gemini.builtins``): ``tiny-random-mgm``
mirrors YanweiLi/MGM-7B (``model_type`` ``mini_gemini``, two safetensors shards + index,
weights under ``model.vision_tower.vision_tower.vision_model.*``,
``model.vision_tower_aux.vision_stem.*`` / ``vision_stages.*.blocks.*.{conv_dw,norm,mlp.fc1,
mlp.fc2,gamma}``, ``model.mm_projector.*``, ``model.vlm_uni_{query,aux,val}_projector.*``,
``model.*`` / ``lm_head.*`` for the LLM); ``tiny-random-mgm-hd`` mirrors YanweiLi/MGM-7B-HD
under the renamed ``mgm`` type (aux 1536, image_grid 2, image_global)."""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from prunesid import PruneSID
from prunesid.vlm import load_vlm
from prunesid.family_kit import builtin_directory
from prunesid.families.mini_gemini.checkpoint import MiniGeminiConfig, native_name, original_name
from tests.conftest import scene

QUESTION = "What is in the picture?"
KEEP_ALL = PruneSID(budget=4096, keep_cls=False, order="spatial")
MODELS = {"tiny-random-mgm": 1, "tiny-random-mgm-hd": 5}  # built-in -> views per image


@functools.lru_cache(maxsize=None)
def _loaded(name):
    """The built-in loaded from its exported original-format directory, as a download would be."""
    return load_vlm(str(builtin_directory(name)))


def _reference_ids(vlm, views: int) -> torch.Tensor:
    """The prompt tokenised around <image>, the placeholder repeated once per fed token."""
    text = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True
    )
    before, after = text.split("<image>")
    tokenizer = vlm.processor.tokenizer
    ids = tokenizer(before)["input_ids"] + [vlm.model.config.image_token_id] * (576 * views) + tokenizer(after, add_special_tokens=False)["input_ids"]
    return torch.tensor([ids])


@pytest.mark.parametrize("name", MODELS)
def test_keeping_everything_equals_the_unmodified_model(name):
    vlm = _loaded(name)
    image = scene(640, 480)
    pixels = vlm.family.preprocess(image)
    ids = _reference_ids(vlm, MODELS[name])
    with torch.inference_mode():
        expected = vlm.model(input_ids=ids, **pixels).logits  # the model's own path from pixels
        for press in (KEEP_ALL, None):
            prepared = vlm.prepare(image, QUESTION, press)
            assert torch.equal(prepared.input_ids, ids)
            logits = vlm.model(input_ids=prepared.input_ids, **prepared.model_inputs).logits  # what generate is given
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
        generated = vlm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, **pixels)
    expected_text = vlm.processor.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
    assert expected_text and vlm.chat(image, QUESTION, press=KEEP_ALL, max_new_tokens=8).text == expected_text


# --- an independent transcription of the original preprocessing, view split and unified_resampler ---


def _expand2square(image: Image.Image, mean) -> Image.Image:
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(int(x * 255) for x in mean))
    canvas.paste(image, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
    return canvas


def _aux_backbone(model, images_aux):
    """stem, stages; every stage upsampled to stage 0's size and concatenated."""
    tower = model.aux_tower
    x = tower.embeddings(images_aux)
    results = []
    for stage in tower.stages:
        x = stage(x)
        results.append(x)
    size = results[0].shape[-2:]
    return torch.cat([results[0]] + [F.interpolate(r, size=size, mode="bilinear", align_corners=False) for r in results[1:]], dim=1)


def _unified_resampler(model, images, images_aux):
    patch_num = int(images.shape[1] ** 0.5)
    patch_size = images_aux.shape[-1] // patch_num
    images_aux = images_aux.permute(0, 2, 3, 1)
    images_aux = images_aux.reshape(len(images_aux), patch_num, patch_size, patch_num, patch_size, images_aux.shape[-1])
    images_aux = images_aux.permute(0, 1, 3, 2, 4, 5)
    images_aux = images_aux.reshape(len(images_aux), patch_num ** 2, patch_size ** 2, images_aux.shape[-1])
    query = model.query_projector(images)
    key = model.aux_projector(images_aux)
    value = model.val_projector(images_aux)
    attention = (query[:, :, None] @ (key.transpose(-1, -2) / key.shape[-1] ** 0.5)).nan_to_num()
    return images, (attention.softmax(-1) @ value).mean(2)


def _original_mined_tokens(vlm, image):
    """[V, 576, D] as MGM's encode_images builds them before mm_projector, views [global, crops]."""
    model, config, processor = vlm.model, vlm.model.config, vlm.processor.image_processor
    aux = processor(images=_expand2square(image, processor.image_mean), return_tensors="pt")["pixel_values"]
    grid, raw = config.image_grid, config.image_size
    low = F.interpolate(aux, size=[raw * grid] * 2, mode="bilinear", align_corners=False)[0]
    if grid >= 2:
        crops = low.reshape(3, grid, raw, grid, raw).permute(1, 3, 0, 2, 4).reshape(-1, 3, raw, raw)
        global_view = F.interpolate(low[None], size=[raw, raw], mode="bilinear", align_corners=False)
        images = torch.cat([crops, global_view])  # the original's input order: crops, then global
    else:
        images = low[None]
    features = model.vision_tower(images, output_hidden_states=True).hidden_states[-2][:, 1:]
    aux_features = _aux_backbone(model, aux)
    if grid >= 2:
        global_features, crop_features = features[-1:], features[:-1]
        aux_global = F.interpolate(aux_features, scale_factor=1 / grid, mode="bilinear", align_corners=False)
        global_features, aux_global_mined = _unified_resampler(model, global_features, aux_global)
        aux_crops = aux_features.reshape(*aux_features.shape[:2], grid, aux_features.shape[-2] // grid, grid, aux_features.shape[-1] // grid)
        aux_crops = aux_crops.permute(0, 2, 4, 1, 3, 5).flatten(1, 2).flatten(0, 1)
        crop_features, aux_crop_mined = _unified_resampler(model, crop_features, aux_crops)
        return torch.cat([global_features, crop_features]) + torch.cat([aux_global_mined, aux_crop_mined])
    features, mined = _unified_resampler(model, features, aux_features)
    return features + mined


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(640, 480), (300, 700)])
def test_mined_tokens_match_a_transcription_of_the_original(name, size):
    vlm = _loaded(name)
    image = scene(*size, seed=5)
    with torch.inference_mode():
        expected = _original_mined_tokens(vlm, image)
        encoded = vlm.encode(image)
    assert encoded.features.shape == (MODELS[name], 576, 64)
    torch.testing.assert_close(encoded.features, expected, rtol=1e-5, atol=1e-5)
    # What the projector receives, keeping everything: exactly those tokens, view after view.
    with torch.inference_mode():
        fed = vlm.visual_features(encoded, vlm.compress(encoded, KEEP_ALL)[0])
        torch.testing.assert_close(fed, vlm.model.mm_projector(expected).flatten(0, 1), rtol=1e-5, atol=1e-5)


def test_mining_the_chosen_tokens_equals_choosing_among_mined_tokens():
    model = _loaded("tiny-random-mgm-hd").model
    with torch.inference_mode():
        pixels = _loaded("tiny-random-mgm-hd").family.preprocess(scene(500, 400, seed=2))
        tokens = model.low_res_tokens(pixels["pixel_values"])
        windows = model.aux_windows(pixels["pixel_values_aux"])
        chosen = torch.stack([torch.randperm(576, generator=torch.Generator().manual_seed(v))[:64] for v in range(5)])
        after = torch.gather(model.mine(tokens, windows), 1, chosen[..., None].expand(-1, -1, 64))
        before = model.mine(torch.gather(tokens, 1, chosen[..., None].expand(-1, -1, 64)), windows, index=chosen)
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "fed"), [("tiny-random-mgm", 64), ("tiny-random-mgm-hd", 320)])
def test_budget_64_feeds_64_per_view(name, fed):
    vlm = _loaded(name)
    image = scene(640, 480, seed=1)
    press = PruneSID(budget=64)
    assert vlm.fed_tokens(image.size, press) == fed  # known before encoding
    captured = []

    def capture(module, args, kwargs):  # the prefill call: the only one given inputs_embeds
        if kwargs["inputs_embeds"] is not None:
            captured.append(kwargs["inputs_embeds"].clone())

    hook = vlm.model.language_model.model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        reply = vlm.chat(image, QUESTION, press=press, max_new_tokens=2)
    finally:
        hook.remove()
    prepared = vlm.prepare(image, QUESTION, press)
    positions = prepared.input_ids[0] == vlm.placeholder_token_id
    assert int(positions.sum()) == fed and reply.visual_tokens == [fed]
    encoded, selection = vlm.encode(image), reply.selections[0]
    with torch.inference_mode():
        # Per view: its CLS (passed through), then its chosen mined tokens, through mm_projector.
        wanted = torch.cat([
            vlm.model.mm_projector(torch.cat([encoded.cls[view:view + 1], encoded.features[view, index]]))
            for view, index in enumerate(selection.indices)
        ])
    torch.testing.assert_close(captured[0][0, positions], wanted, rtol=1e-5, atol=1e-6)
    assert [int(index.numel()) for index in selection.indices] == [63] * MODELS[name]


def test_dynamic_budget_is_shared_across_views_and_images():
    vlm = _loaded("tiny-random-mgm-hd")
    images = [scene(640, 480, seed=1), Image.new("RGB", (640, 480), (90, 90, 90))]
    phi_ref = vlm.calibrate(images)
    reply = vlm.chat(images, QUESTION, press=PruneSID(budget=64, dynamic=True, phi_ref=phi_ref), max_new_tokens=1)
    counts = [selection.output_counts() for selection in reply.selections]
    assert [len(per_view) for per_view in counts] == [5, 5]
    assert reply.visual_tokens == [sum(per_view) for per_view in counts]
    assert sum(counts[0]) > sum(counts[1])  # the busy scene gets more than the flat grey one


def test_hd_views_sit_on_the_padded_square():
    grids = _loaded("tiny-random-mgm-hd").family.layout.grids((400, 300))
    assert [grid.label for grid in grids] == ["global", "crop 0,0", "crop 0,1", "crop 1,0", "crop 1,1"]
    assert grids[0].box == (0, -50, 400, 350) and grids[4].box == (200.0, 150.0, 400.0, 350.0)
    assert all((grid.rows, grid.cols) == (24, 24) for grid in grids)
    assert _loaded("tiny-random-mgm").family.layout.grids((300, 400))[0].box == (-50, 0, 350, 400)


# --- the checkpoint format ---


def test_weight_names_map_both_ways():
    model = _loaded("tiny-random-mgm").model
    for name in model.state_dict():
        assert native_name(original_name(name)) == name
    assert native_name("model.vision_tower_aux.vision_stages.2.blocks.26.mlp.fc1.weight") == "aux_tower.stages.2.layers.26.pwconv1.weight"
    assert native_name("model.vision_tower_aux.vision_stages.1.blocks.0.gamma") == "aux_tower.stages.1.layers.0.layer_scale_parameter"
    assert native_name("model.vision_tower_aux.vision_stages.3.downsample.1.bias") == "aux_tower.stages.3.downsampling_layer.1.bias"
    assert native_name("model.vision_tower_aux.vision_stem.1.weight") == "aux_tower.embeddings.layernorm.weight"
    assert native_name("model.layers.0.self_attn.q_proj.weight") == "language_model.model.layers.0.self_attn.q_proj.weight"


def test_released_configs_name_their_towers():
    raw = {
        "model_type": "mgm", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_vision_tower_aux": "./model_zoo/OpenAI/openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup",
        "mm_hidden_size": 1024, "mm_hidden_size_aux": 2880, "mm_projector_type": "mlp2x_gelu", "image_size_aux": 1536,
        "image_grid": 2, "image_global": True,
    }
    config = MiniGeminiConfig(raw)
    assert config.vision["num_hidden_layers"] == 24 and sum(config.aux["hidden_sizes"]) == 2880
    assert config.text_config.hidden_size == 4096 and not config.scale_image_features
    assert MiniGeminiConfig({**raw, "model_type": "mini_gemini_gemma"}).scale_image_features
    with pytest.raises(ValueError, match="mm_hidden_size_aux is 1536"):
        MiniGeminiConfig({**raw, "mm_hidden_size_aux": 1536})
    with pytest.raises(ValueError, match="mm_projector_type 'linear'"):
        MiniGeminiConfig({**raw, "mm_projector_type": "linear"})


def _broken_copy(tmp_path, edit):
    """The exported checkpoint with ``edit(weights, directory)`` applied, its weights rewritten as one file."""
    directory = tmp_path / "mgm"
    shutil.copytree(builtin_directory("tiny-random-mgm"), directory)
    tensors = {}
    for shard in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
        shard.unlink()
    (directory / "model.safetensors.index.json").unlink()
    edit(tensors, directory)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def test_the_export_loads_back_unbroken(tmp_path):
    assert load_vlm(str(_broken_copy(tmp_path, lambda tensors, _: None))).model.config.model_type == "mini_gemini"


def test_a_missing_weight_is_named(tmp_path):
    directory = _broken_copy(tmp_path, lambda tensors, _: tensors.pop(next(k for k in sorted(tensors) if "vlm_uni_val" in k)))
    with pytest.raises(ValueError, match=r"missing weights: model\.vlm_uni_val_projector\.\d\.(weight|bias)"):
        load_vlm(str(directory))


def test_an_unknown_weight_is_named(tmp_path):
    directory = _broken_copy(tmp_path, lambda tensors, _: tensors.update({"model.vision_resampler.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"unknown weights \(no place in the model\): model\.vision_resampler\.weight"):
        load_vlm(str(directory))


def test_a_wrong_shape_is_named(tmp_path):
    def widen(tensors, _):
        name = next(k for k in sorted(tensors) if k.endswith("mm_projector.0.weight") or k.startswith("model.vision_tower_aux"))
        tensors[name] = torch.zeros(3, *tensors[name].shape[1:])

    directory = _broken_copy(tmp_path, widen)
    with pytest.raises(ValueError, match=r"wrong shapes: model\.\S+ is \(3,"):
        load_vlm(str(directory))


def test_an_unknown_model_type_is_named(tmp_path):
    def retype(_, directory):
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "model_type": "mgm_phi"}))

    directory = _broken_copy(tmp_path, retype)
    with pytest.raises(ValueError, match="'mgm_phi'"):
        load_vlm(str(directory))


def test_gemma_variants_scale_the_image_rows_as_mgm_2b_was_trained():
    model = _loaded("tiny-random-mgm").model
    ids = torch.tensor([[1, model.config.image_token_id, model.config.image_token_id, 70]])
    features = [torch.randn(2, 64)]
    with torch.inference_mode():
        plain = model.embed(ids, features)
        model.config.scale_image_features = True
        try:
            scaled = model.embed(ids, features)
        finally:
            model.config.scale_image_features = False
    torch.testing.assert_close(scaled[0, 1:3], features[0] * 8.0)  # sqrt(hidden 64)
    assert torch.equal(scaled[0, [0, 3]], plain[0, [0, 3]]) and torch.equal(plain[0, 1:3], features[0])
    with pytest.raises(ValueError, match="holds 2 image placeholder tokens but 3 image features"):
        model.embed(ids, [torch.randn(3, 64)])
