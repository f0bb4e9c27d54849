"""lmms-eval's own classes for LLaVA-OneVision (``llava_hf``), InternVL (``internvl_hf``),
Qwen3-VL and Qwen3.5 (``qwen3_vl``, ``qwen3_5``) with a press, in process, on the built-ins:
a press keeping every token answers exactly as ``method=none`` (the unmodified class), and
N = 64 feeds the LLM the per-view N_eff the records show. (Qwen's sample preparation,
qwen-vl-utils, is stood in for: tests/eval/qwen_vl_utils_standin.py.)
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lmms_eval")

from prunesid.family_kit.base import FAMILIES  # noqa: E402
from tests.conftest import scene, scene_clip  # noqa: E402
from tests.eval import qwen_vl_utils_standin  # noqa: E402

pytestmark = pytest.mark.eval

QUESTION = "Is there a red box in the picture?"
BUDGET = 64

# model id -> (lmms-eval class of ours, built-in, its --model_args besides ours)
CASES = {
    "llava-onevision": ("prunesid_llava_hf", "tiny-random-llava-onevision", {"device_map": "cpu", "dtype": "float32"}),
    "internvl": ("prunesid_internvl_hf", "tiny-random-internvl", {"device_map": "cpu"}),
    "qwen3-vl": ("prunesid_qwen3_vl", "tiny-random-qwen3-vl", {"device_map": "cpu", "min_pixels": 3136, "max_pixels": 200704}),
    "qwen3.5": ("prunesid_qwen3_5", "tiny-random-qwen3.5", {"device_map": "cpu", "min_pixels": 3136, "max_pixels": 200704}),
    # MoE checkpoints in directories without lmms-eval's "A<n>B" name mark: built from their config.
    "qwen3-vl-moe": ("prunesid_qwen3_vl", "tiny-random-qwen3-vl-moe", {"device_map": "cpu", "min_pixels": 3136, "max_pixels": 200704}),
    "qwen3.5-moe": ("prunesid_qwen3_5", "tiny-random-qwen3.5-moe", {"device_map": "cpu", "min_pixels": 3136, "max_pixels": 200704}),
}


@pytest.fixture(scope="module", autouse=True)
def qwen_vl_utils():
    from lmms_eval.models.chat import qwen3_vl as chat
    from lmms_eval.models.simple import qwen3_vl as simple

    with pytest.MonkeyPatch.context() as patch:
        for module in (chat, simple):
            patch.setattr(module, "process_vision_info", qwen_vl_utils_standin.process_vision_info)
            patch.setattr(module, "_has_qwen_vl", True)
        yield


def lmms_model(case: str, tmp_path, **ours):
    from lmms_eval.models import get_model

    model_id, builtin, args = CASES[case]
    cls = get_model(model_id)  # the chat class, as lmms-eval finds it
    lm = cls(pretrained=builtin, device="cpu", records=str(tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl"), **args, **ours)
    lm.task_dict = {"pictures": {"test": [{"question": QUESTION, "image": scene(400, 300, seed=11)}]}}
    return lm


def answer(lm):
    """lmms-eval's answer (greedy, 5 tokens) on the image, the input ids the model's prefill received, the record."""

    def doc_to_messages(doc):
        return [{"role": "user", "content": [{"type": "image", "url": doc["image"]}, {"type": "text", "text": doc["question"]}]}]

    return answer_messages(lm, doc_to_messages, "pictures")


def answer_messages(lm, doc_to_messages, task: str):
    """lmms-eval's answer (greedy, 5 tokens) to doc 0 of ``task`` in ``doc_to_messages``'s
    words, the input ids the model's prefill received, the record."""
    from lmms_eval.api.instance import Instance

    gen = {"max_new_tokens": 5, "temperature": 0, "do_sample": False}
    request = Instance("generate_until", ("ctx", doc_to_messages, gen, 0, task, "test"), idx=0, metadata={"task": task, "doc_id": 0, "repeats": 1})
    seen = []

    def prefill(module, args, kwargs):
        if kwargs.get("past_key_values") is None or kwargs["past_key_values"].get_seq_length() == 0:
            seen.append(kwargs.get("input_ids"))

    hook = lm.model.register_forward_pre_hook(prefill, with_kwargs=True)
    try:
        (text,) = lm.generate_until([request])
    finally:
        hook.remove()
    return getattr(text, "text", text), seen[0], json.loads(lm.records_path.read_text().splitlines()[-1])


@pytest.mark.parametrize("case", list(CASES))
def test_a_press_through_lmms_eval_s_class(case, tmp_path):
    unmodified = lmms_model(case, tmp_path, method="none")
    family = unmodified.prunesid_vlm.family
    assert type(family) is FAMILIES[unmodified.model.config.model_type].family
    assert type(unmodified.model).__name__ == unmodified.model.config.architectures[0]  # MoE built as MoE
    placeholder = family.placeholder_token_id
    expected, ids, record = answer(unmodified)
    full = int((ids == placeholder).sum())
    assert record["visual_tokens"] == [full] and full > BUDGET

    keep_all = lmms_model(case, tmp_path, method="prunesid", budget=100_000, order="spatial")
    got, ids_all, record = answer(keep_all)
    assert got == expected and int((ids_all == placeholder).sum()) == full == record["visual_tokens"][0]

    pressed = lmms_model(case, tmp_path, method="prunesid", budget=BUDGET)
    _, ids_pressed, record = answer(pressed)
    (image,) = record["images"]
    per_view = [view["visual_tokens"] for view in image["views"]]
    fed = int((ids_pressed == placeholder).sum())  # what the LLM receives
    assert fed == record["visual_tokens"][0] == image["visual_tokens"] < full
    assert fed == sum(per_view) + (fed - sum(per_view))  # view tokens, plus any newline tokens the family feeds
    assert all(view["budget"] == view["visual_tokens"] for view in image["views"])
    assert image["unmodified_tokens"] == full


def test_internvl_tiling_other_than_the_checkpoint_s_is_refused_under_a_press(tmp_path):
    with pytest.raises(ValueError, match="--model_args min_patches=1, max_patches=4 differ from the checkpoint's tiling"):
        lmms_model("internvl", tmp_path, method="prunesid", budget=64, max_patches=4)


def test_entry_points_name_the_classes():
    from lmms_eval.models import get_model

    from prunesid.families.internvl import lmms_eval_model as internvl
    from prunesid.families.qwen_vl import lmms_eval_model as models

    assert get_model("prunesid_qwen3_vl") is models.Qwen3_VL and get_model("prunesid_qwen3_vl", force_simple=True) is models.Qwen3_VLSimple
    assert get_model("prunesid_qwen3_5") is models.Qwen3_5 and get_model("prunesid_qwen3_5", force_simple=True) is models.Qwen3_5Simple
    assert get_model("prunesid_internvl_hf") is internvl.InternVLHf


def test_arguments_passed_on_by_lmms_eval_s_qwen3_5_are_accepted():
    """qwen3_5's __init__ passes **kwargs to qwen3_vl's: device_map, fps, ... are its arguments too."""
    from prunesid.eval.models import _accepted_arguments
    from prunesid.families.qwen_vl.lmms_eval_model import Qwen3_5

    accepted = _accepted_arguments(Qwen3_5._lmms_eval_class())
    assert {"device_map", "fps", "max_num_frames", "enable_thinking", "max_frames", "total_pixels"} <= accepted


# --- InternVL clips: lmms-eval's internvl_hf hands the processor the clip's file ----------------

CLIP_FRAMES = 8  # lmms-eval's num_frames, sampled from the clip's 12


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return scene_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 12, 6, (224, 168))


def internvl_answer(lm, clip: str, with_image: bool):
    """lmms-eval's answer to one question on a clip (and an image before it), the prefill's ids, the record."""
    lm.task_dict = {"clips": {"test": [{"video": clip, "image": scene(500, 300, seed=4), "question": QUESTION}]}}

    def doc_to_messages(doc):
        content = [{"type": "image", "url": doc["image"]}] if with_image else []
        content += [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["question"]}]
        return [{"role": "user", "content": content}]

    return answer_messages(lm, doc_to_messages, "clips")


@pytest.mark.parametrize("with_image", [False, True], ids=["clip", "image and clip"])
def test_an_internvl_clip_through_lmms_eval_gets_n_per_frame(tmp_path, clip_file, with_image):
    import torch

    args = {"num_frames": CLIP_FRAMES}
    unmodified = lmms_model("internvl", tmp_path, method="none", **args)
    context = unmodified.model.config.image_token_id
    expected, ids, record = internvl_answer(unmodified, clip_file, with_image)
    image_views = unmodified.prunesid_vlm.family.layout.num_views((500, 300)) if with_image else 0  # tiles + thumbnail
    assert int((ids == context).sum()) == (image_views + CLIP_FRAMES) * 256
    # images and frames share the model's placeholder; the record counts each modality apart
    assert record["visual_tokens"] == [image_views * 256] * with_image + [CLIP_FRAMES * 256]

    keep_all = lmms_model("internvl", tmp_path, method="prunesid", budget=100_000, order="spatial", **args)
    got, ids_all, record = internvl_answer(keep_all, clip_file, with_image)
    assert got == expected and torch.equal(ids_all, ids)
    assert [item["modality"] for item in record["images"]] == ["image"] * with_image + ["video"]

    pressed = lmms_model("internvl", tmp_path, method="prunesid", budget=BUDGET, **args)
    _, ids_pressed, record = internvl_answer(pressed, clip_file, with_image)
    assert int((ids_pressed == context).sum()) == (image_views + CLIP_FRAMES) * BUDGET
    assert ids_pressed.shape[1] == ids.shape[1] - (image_views + CLIP_FRAMES) * (256 - BUDGET)
    video = record["images"][-1]
    assert video["modality"] == "video" and [view["visual_tokens"] for view in video["views"]] == [BUDGET] * CLIP_FRAMES
    # the processor's frame labels stay where they were: Frame1: ... Frame8:
    text = pressed.processor.tokenizer.decode(ids_pressed[0])
    assert [int(n) for n in __import__("re").findall(r"Frame(\d+): <img>", text)] == list(range(1, CLIP_FRAMES + 1))


def test_an_internvl_clip_shorter_than_num_frames_is_refused(tmp_path, clip_file):
    lm = lmms_model("internvl", tmp_path, method="prunesid", budget=BUDGET, num_frames=13)
    with pytest.raises(ValueError, match="cannot sample 13 frames from 12"):
        internvl_answer(lm, clip_file, False)
