"""A press from outside the package, registered at run time, reaches every front end with no
other edit: the CLI's ``--method`` and flags, the launched demo's method switch (through
gradio_client) and lmms-eval's ``--model_args``.

The toy press lives in a folder this test writes, never in the package. It is found the way
an installed plug-in is, through the ``prunesid.presses`` entry-point group (a
``*.dist-info`` folder on the path, what ``pip install`` leaves), or named by
``$PRUNESID_PLUGINS``. Every front end runs in its own process, as a user starts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import launched_app, scene

# Each test installs a plug-in and runs a front end in a process of its own.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUDGET, SKIP = 16, 2

TOY_PRESS = '''"""The first tokens of each view: a press made outside prunesid, for its tests."""

from dataclasses import dataclass
from typing import ClassVar

from prunesid.compression import Compression
from prunesid.methods import Press, PressInfo, option, register_press
from prunesid.methods.common import budgets, positions, validated


@register_press("toy_first")
@dataclass(frozen=True)
class FirstTokens(Press):
    """Keeps each view's first tokens, after ``skip`` of them."""

    skip: int = option(0, "tokens passed over before the kept ones", minimum=0)

    info: ClassVar[PressInfo] = PressInfo(label="FirstTokens", paper="", summary="the first tokens of each view (a plug-in)")

    def compress(self, tokens):
        x, valid = validated(tokens)
        reserved = self.reserved(tokens)
        budget, keep = budgets(self.budget, reserved, tokens, valid)
        indices = [positions(valid[view])[self.skip:][:count] for view, count in enumerate(keep)]
        return Compression(indices=indices, valid=valid, budget=budget, reserved=reserved, method=self.name)
'''


def write_plugin(folder: Path, entry_point: bool) -> Path:
    """``folder/toy_press.py`` and, with ``entry_point``, the metadata of an installed
    distribution that names it in the ``prunesid.presses`` group."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_press.py").write_text(TOY_PRESS)
    if entry_point:
        info = folder / "toy_press-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-press\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text("[prunesid.presses]\ntoy_first = toy_press\n")
    return folder


def plugin_env(folder: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PRUNESID_PLUGINS", "PRUNESID_MODEL", "GRADIO_SERVER_NAME")}
    env.update(PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **extra)
    return env


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunesid.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("plugin-installed"), entry_point=True)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin-image") / "scene.png"
    scene(320, 240, seed=12).save(path)
    return path


def test_the_cli_lists_and_runs_an_installed_plugin_press(installed, image_file):
    env = plugin_env(installed)
    top = cli(env, "--help")
    assert "methods (--method): prunesid, visionzip, divprune, toy_first, random, uniform;" in " ".join(top.stdout.split())
    helped = cli(env, "compress", "--help")
    assert helped.returncode == 0, helped.stderr
    text = " ".join(helped.stdout.split())
    assert "{prunesid,visionzip,divprune,toy_first,random,uniform}" in text  # by PressInfo.order (default 50)
    assert "toy_first: the first tokens of each view (a plug-in)" in text
    assert "--skip SKIP [toy_first] tokens passed over before the kept ones [>= 0; default 0]" in text
    ran = cli(env, "compress", str(image_file), "--method", "toy_first", "--budget", str(BUDGET), "--skip", str(SKIP), "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    (view,) = report["views"]
    # tiny-random passes the CLS through: 15 patches, the first after the 2 skipped, + CLS
    assert view["method"] == "toy_first" and view["kept"] == list(range(SKIP, SKIP + BUDGET - 1)) and view["reserved"] == 1
    assert report["visual_tokens"] == BUDGET
    refused = cli(env, "compress", str(image_file), "--method", "toy_first", "--grouping", "kmeans")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "prunesid compress: error: --grouping is an option of prunesid; it does not apply to --method toy_first"


def test_prunesid_plugins_names_a_module_without_installing_it(tmp_path):
    folder = write_plugin(tmp_path / "loose", entry_point=False)
    named = cli(plugin_env(folder, PRUNESID_PLUGINS="toy_press"), "chat", "--help")
    assert named.returncode == 0, named.stderr
    assert "toy_first" in named.stdout and "--skip" in named.stdout
    unnamed = cli(plugin_env(folder), "chat", "--help")  # on the path but not named: not loaded
    assert unnamed.returncode == 0 and "toy_first" not in unnamed.stdout and "--skip" not in unnamed.stdout
    broken = cli(plugin_env(folder, PRUNESID_PLUGINS="toy_pres"), "chat", "--help")
    assert broken.returncode != 0 and "$PRUNESID_PLUGINS names 'toy_pres', which cannot be imported" in broken.stderr


# --- the launched demo ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_with_plugin(installed, tmp_path_factory):
    """``python app.py`` with the plug-in installed (on the path with its entry point)."""
    log_path = tmp_path_factory.mktemp("plugin-app") / "app.log"
    with launched_app(log_path=log_path, env=plugin_env(installed), timeout=300) as (url, _):
        yield url


def test_the_demo_switch_offers_and_runs_an_installed_plugin_press(app_with_plugin, image_file):
    from gradio_client import Client, handle_file

    client = Client(app_with_plugin, verbose=False)
    (switch,) = [c for c in client.config["components"] if c.get("props", {}).get("elem_id") == "method"]
    offered = [choice[0] if isinstance(choice, (list, tuple)) else choice for choice in switch["props"]["choices"]]
    assert offered == ["PruneSID", "PruneSID-Dyn", "VisionZip", "DivPrune", "FirstTokens", "random", "uniform"]
    drawn, stats, table = client.predict(image=handle_file(str(image_file)), method="FirstTokens", budget=BUDGET, api_name="/analyze_method")
    assert stats["method"] == "FirstTokens" and stats["visual_tokens"] == BUDGET and stats["kept"] == BUDGET - 1
    assert "FirstTokens: the first tokens of each view (a plug-in)" in table and Path(drawn).is_file()


# --- lmms-eval -----------------------------------------------------------------------------


@pytest.mark.eval
def test_lmms_eval_model_args_take_an_installed_plugin_press(installed, tmp_path):
    pytest.importorskip("lmms_eval")
    from tests.eval.test_eval_lmms import TASK, offline_env, task_images, write_task

    write_task(tmp_path / "task")
    records = tmp_path / "records.jsonl"
    config = [{
        "model": "prunesid_llava_hf",
        "model_args": f"pretrained=tiny-random,method=toy_first,budget={BUDGET},skip={SKIP},records={records}",
        "tasks": TASK, "batch_size": 1, "output_path": str(tmp_path / "out"), "include_path": str(tmp_path / "task"),
        "device": "cpu",
    }]
    (tmp_path / "run.yaml").write_text(json.dumps(config))  # JSON is YAML
    env = {**offline_env(), "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    env.pop("PRUNESID_PLUGINS", None)
    ran = subprocess.run([sys.executable, "-m", "lmms_eval", "--config", str(tmp_path / "run.yaml")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert records.is_file(), (ran.stdout + ran.stderr)[-4000:]
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == len(task_images())
    for line in lines:
        assert line["settings"] == {"method": "toy_first", "budget": BUDGET, "keep_cls": True, "skip": SKIP}
        (image,) = line["images"]
        (view,) = image["views"]
        assert line["visual_tokens"] == [BUDGET] and view["kept"] == list(range(SKIP, SKIP + BUDGET - 1))
