"""A family and a press from outside the package, registered at run time, reach every list
with no other edit: ``load_vlm`` and the built-ins, the CLI's choices, the demo's picker and
lmms-eval's model list.

The toy family is LLaVA-1.5 under a model type of its own (``toy_llava``): a folder this test
writes, laid out as a family folder of the package is (``__init__.py`` with ``FAMILY``,
``adapter.py``, ``builtins.py``, ``lmms_eval_model.py``), and named by ``$PRUNESID_PLUGINS``
together with the toy press of tests/methods/test_methods_plugins.py. Each front end runs in a
process of its own, as a user starts it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import scene
from tests.methods.test_methods_plugins import cli, plugin_env, write_plugin

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

TOY_FAMILY = {
    "__init__.py": '''
from prunesid.family_kit import FamilyDeclaration, LmmsEvalModel

FAMILY = FamilyDeclaration(
    package=__name__,
    builtins=("tiny-random-toy",),
    lmms_eval=(LmmsEvalModel("prunesid_toy", simple_class="Toy"),),
)
''',
    "adapter.py": '''
from transformers import LlavaConfig, LlavaForConditionalGeneration

from prunesid.family_kit.base import register_family
from prunesid.families.llava.adapter import SingleView


class ToyConfig(LlavaConfig):
    model_type = "toy_llava"


class ToyModel(LlavaForConditionalGeneration):
    config_class = ToyConfig


@register_family("toy_llava", ToyModel, "toy: LLaVA-1.5 under its own model type")
class Toy(SingleView):
    pass
''',
    "builtins.py": '''
import dataclasses

from transformers import CLIPImageProcessorPil, LlavaProcessor

from prunesid.family_kit.builtin_registry import register_builtin
from prunesid.families.llava.builtins import IMAGE_SIZE, LLAVA_LAYOUT, PATCH_SIZE, build_llava, image_processor_kwargs
from toy_family.adapter import ToyConfig, ToyModel


@register_builtin("tiny-random-toy", dataclasses.replace(LLAVA_LAYOUT, repo="toy/toy-llava"))
def build_toy():
    return build_llava(ToyModel, ToyConfig, LlavaProcessor, CLIPImageProcessorPil(**image_processor_kwargs()), image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2)
''',
    "lmms_eval_model.py": '''
from prunesid.eval.library_models import LibraryModel


class Toy(LibraryModel):
    model_id = "prunesid_toy"
    default_pretrained = "tiny-random-toy"
    family_names = ("toy_llava",)
''',
}

# Every list, in one process: the family's model type and built-in, the press, the demo's
# picker and lmms-eval's model list; then a pressed answer and keep-everything == unmodified.
PROBE = '''
import json, sys
import torch
from PIL import Image
import prunesid
from prunesid.family_kit import load_families
from prunesid.methods.registry import build_press, presses
from prunesid.vlm import BUILTIN_MODELS
from demo.models import picker_choices
from lmms_eval.models import get_model

vlm = prunesid.load_vlm("tiny-random-toy")
image = Image.open(sys.argv[1])
pressed = vlm.chat(image, "What is this?", press=build_press("toy_first", {"budget": 16, "skip": 2}), max_new_tokens=4)
keep_all = prunesid.PruneSID(budget=100_000, keep_cls=False, order="spatial")  # every patch, in its place
kept_all = vlm.chat(image, "What is this?", press=keep_all, max_new_tokens=8)
plain = vlm.chat(image, "What is this?", max_new_tokens=8)
print(json.dumps({
    "family": type(vlm.family).__name__,
    "model_types": sorted(load_families()),
    "builtins": list(BUILTIN_MODELS),
    "presses": list(presses()),
    "picker": picker_choices("tiny-random", hub_reachable=False),
    "lmms_eval": get_model("prunesid_toy").__module__,
    "fed": pressed.visual_tokens[0],
    "same_as_unmodified": kept_all.text == plain.text and kept_all.visual_tokens == plain.visual_tokens,
}))
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    folder = write_plugin(tmp_path_factory.mktemp("plugins"), entry_point=False)
    package = folder / "toy_family"
    package.mkdir()
    for name, text in TOY_FAMILY.items():
        (package / name).write_text(text.lstrip())
    return folder


@pytest.fixture(scope="module")
def env(plugins) -> dict:
    return plugin_env(plugins, PRUNESID_PLUGINS="toy_press,toy_family")


def test_the_toy_family_and_press_reach_the_library_the_demo_and_lmms_eval(env, tmp_path):
    image = tmp_path / "scene.png"
    scene(400, 300, seed=3).save(image)
    done = subprocess.run([sys.executable, "-c", PROBE, str(image)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["family"] == "Toy"
    assert "toy_llava" in seen["model_types"] and "llava" in seen["model_types"]
    assert seen["builtins"][-1] == "tiny-random-toy" and seen["builtins"][0] == "tiny-random"
    assert "toy_first" in seen["presses"]
    assert "tiny-random-toy" in seen["picker"]
    assert seen["lmms_eval"] == "toy_family.lmms_eval_model"
    assert seen["fed"] == 16
    assert seen["same_as_unmodified"]


def test_the_toy_family_reaches_the_cli(env, tmp_path):
    listed = cli({**env, "COLUMNS": "10000"}, "chat", "--help")  # one line per flag: no name cut at a hyphen
    assert listed.returncode == 0, listed.stderr
    assert "tiny-random-toy" in listed.stdout and "toy_first" in listed.stdout
    image = tmp_path / "scene.png"
    scene(400, 300, seed=3).save(image)
    done = cli(env, "chat", str(image), "What is this?", "--model", "tiny-random-toy", "--method", "toy_first", "--budget", "16", "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the CLI printed no answer"


def test_without_the_plug_in_the_toy_is_nowhere(plugins):
    done = cli(plugin_env(plugins, COLUMNS="10000"), "chat", "--help")
    assert done.returncode == 0 and "tiny-random-toy" not in done.stdout and "toy_first" not in done.stdout
