"""The plug-in's entry point (prunesid.vllm.register) and its CPU-runner switch
(prunesid.vllm.cpu_runner), without an engine: vLLM's registry is a copy, the CPU runner a
stand-in module."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

from prunesid.vllm import ARCHITECTURES, CLASS_PATHS, cpu_runner, register

# A stand-in for vLLM's cpu_model_runner: load_model records its arguments and sets the model
# that get_model returns (before it, get_model fails, as vLLM's would).
RUNNER_SOURCE = '''
from types import SimpleNamespace


class CPUModelRunner:
    def __init__(self, model, mm_config):
        self.pending, self.calls = model, []
        self.model_config = SimpleNamespace(multimodal_config=mm_config)
        self.is_multimodal_pruning_enabled = "unset"

    def load_model(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        self.model = self.pending

    def get_model(self):
        return self.model
'''


class Switch:
    """A multimodal config whose pruning switch reads ``on``."""

    def __init__(self, on: bool):
        self.on = on

    def is_multimodal_pruning_enabled(self) -> bool:
        return self.on


class Marked:  # the plug-in's M-RoPE classes carry the marker (qwen_vl/vllm_models/base.py)
    prunesid_positions = True
    supports_multimodal_pruning = True


class MarkedWithoutPruning:
    prunesid_positions = True


class Unmarked:  # vLLM's own classes: left as vLLM runs them
    supports_multimodal_pruning = True


# --- register() -----------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """vLLM's registry without the plug-in's names (a copy, restored after), and install() counted."""
    from vllm import ModelRegistry

    ours = set(ARCHITECTURES.values())
    monkeypatch.setattr(ModelRegistry, "models", {k: v for k, v in ModelRegistry.models.items() if k not in ours})
    installs = []
    monkeypatch.setattr(cpu_runner, "install", lambda: installs.append(True))
    return ModelRegistry.models, installs


def test_register_names_each_architecture_to_its_class_path(registry):
    """Catches an architecture left out, mapped to another family's class, names registered
    under the model type, vLLM's own entries replaced, and install() not called."""
    models, installs = registry
    own = dict(models)
    register()
    assert set(models) == set(own) | set(ARCHITECTURES.values())
    for model_type, architecture in ARCHITECTURES.items():
        entry = models[architecture]
        assert f"{entry.module_name}:{entry.class_name}" == CLASS_PATHS[model_type], model_type
    assert all(models[name] is entry for name, entry in own.items())
    assert installs == [True]


def test_register_twice_changes_nothing(registry):
    """Catches registration without the ``not in get_supported_archs()`` guard (every call
    would replace the entries, and a name a user registered first)."""
    models, _ = registry
    register()
    first = dict(models)
    register()
    assert models.keys() == first.keys()
    assert all(models[name] is entry for name, entry in first.items())


# --- the wrap of load_model -------------------------------------------------------------


def standin_module(name: str = "standin_cpu_model_runner") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(RUNNER_SOURCE, module.__dict__)
    return module


@pytest.mark.parametrize(
    ("model", "mm_config", "enabled"),
    [
        (Marked, Switch(True), True),
        (Marked, Switch(False), False),
        (Marked, None, False),
        (MarkedWithoutPruning, Switch(True), False),
        (Unmarked, Switch(True), "unset"),
    ],
)
def test_load_model_switches_pruning_on_for_marked_models_only(model, mm_config, enabled):
    """Catches the marker test dropped or its default flipped (vLLM's models changed), a
    dropped term of the GPU runner's statement (the model's support, the config's switch,
    the None config), and the model asked for before the original load_model ran."""
    module = standin_module()
    cpu_runner._wrap(module)
    runner = module.CPUModelRunner(model(), mm_config)
    runner.load_model("config", device="cpu")
    assert runner.calls == [(("config",), {"device": "cpu"})]
    assert runner.is_multimodal_pruning_enabled is enabled


def test_wrapping_twice_wraps_once():
    """Catches a wrap not marked as such (wrapped again on every install) and a lost original."""
    module = standin_module()
    original = module.CPUModelRunner.load_model
    cpu_runner._wrap(module)
    wrapped = module.CPUModelRunner.load_model
    cpu_runner._wrap(module)
    assert module.CPUModelRunner.load_model is wrapped is not original
    assert wrapped.__wrapped__ is original


# --- install() and its import hook --------------------------------------------------------


@pytest.fixture
def runner_name(tmp_path, monkeypatch):
    """cpu_runner.MODULE pointed at a stand-in file under tmp_path, not imported yet; the
    import hooks on a copy of sys.meta_path without any hook installed before."""
    name = "standin_cpu_model_runner"
    (tmp_path / f"{name}.py").write_text(RUNNER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cpu_runner, "MODULE", name)
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, cpu_runner._WrapOnImport)])
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def hooks() -> list:
    return [finder for finder in sys.meta_path if isinstance(finder, cpu_runner._WrapOnImport)]


def test_install_wraps_a_runner_already_imported(runner_name):
    """Catches install() waiting for an import that already happened (the runner never wrapped)."""
    module = importlib.import_module(runner_name)
    original = module.CPUModelRunner.load_model
    cpu_runner.install()
    assert module.CPUModelRunner.load_model.__wrapped__ is original
    assert hooks() == []


def test_install_wraps_the_runner_when_it_is_imported(runner_name):
    """Catches a second hook per install(), a hook behind the real finders (never asked),
    the wrap applied before the module ran (no CPUModelRunner yet), and a hook that stays."""
    cpu_runner.install()
    cpu_runner.install()
    assert len(hooks()) == 1 and sys.meta_path[0] is hooks()[0]
    module = importlib.import_module(runner_name)
    assert hooks() == []
    runner = module.CPUModelRunner(Marked(), Switch(True))
    runner.load_model()
    assert runner.is_multimodal_pruning_enabled is True


def test_the_hook_ignores_other_modules_and_a_missing_runner(runner_name, monkeypatch):
    """Catches a hook that answers (or removes itself) for any module, and one that fails
    on a runner module that does not exist instead of letting the import say so."""
    cpu_runner.install()
    [hook] = hooks()
    assert hook.find_spec("json") is None and hooks() == [hook]
    monkeypatch.setattr(cpu_runner, "MODULE", "standin_cpu_model_runner_missing")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("standin_cpu_model_runner_missing")
    assert hooks() == []
