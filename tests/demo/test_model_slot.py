"""The model picker without a server: what it lists, what it refuses, and the one-model slot
(a switch waits for the requests running on the loaded model, never two models loaded, a
session's choice is its own)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest

import demo.models as models
from demo.handlers import user_errors
from demo.limits import MODEL_SWITCHES
from demo.model_choice import CPU_MODEL, GPU_MODEL
from demo.models import ModelSlot, picker_choices
from prunesid.family_kit import builtin_models
from prunesid.family_kit.builtin_registry import BUILTINS


class Loader:
    """A stand-in for loading a model: records loads, how many bundles are alive at once."""

    def __init__(self, seconds: float = 0.0, broken: tuple = ()):
        self.seconds, self.broken = seconds, broken
        self.loads: list[str] = []
        self.held_while_loading: list = []  # what the slot held when each load began
        self.slot = None

    def __call__(self, name: str):
        self.held_while_loading.append(self.slot.loaded)
        if name in self.broken:
            raise OSError("disk full")
        time.sleep(self.seconds)
        self.loads.append(name)
        return SimpleNamespace(name=name)


def slot_with(loader: Loader, first: str = "a", choices=("a", "b", "c"), **kwargs) -> ModelSlot:
    loader.slot = ModelSlot(SimpleNamespace(name=first), list(choices), load=loader, free=lambda: None, **kwargs)
    return loader.slot


def test_the_picker_lists_the_registry_at_launch_and_hub_models_only_when_reachable(monkeypatch):
    monkeypatch.setitem(BUILTINS, "tiny-random-added-later", BUILTINS["tiny-random"])
    offline = picker_choices("tiny-random", hub_reachable=False)
    assert offline == ["tiny-random"] + [name for name in builtin_models() if name != "tiny-random"]
    assert "tiny-random-added-later" in offline and CPU_MODEL not in offline and GPU_MODEL not in offline
    assert picker_choices("tiny-random", hub_reachable=True, gpu=False)[-1] == CPU_MODEL
    assert picker_choices("tiny-random", hub_reachable=True, gpu=True)[-2:] == [GPU_MODEL, CPU_MODEL]
    # The start-up model comes first, listed once.
    assert picker_choices("tiny-random-next", hub_reachable=False).count("tiny-random-next") == 1


def test_hf_hub_offline_lists_no_hub_model_and_asks_nothing(monkeypatch):
    import demo.model_choice as model_choice

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_choice, "_fetch", lambda *args: pytest.fail("the Hub was asked"))
    assert models.hub_reachable_at_launch() is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert models.hub_reachable_at_launch(model_choice.ModelChoice("tiny-random", "offline", offline="no network")) is False


@pytest.mark.parametrize("value", ["bogus", "", None, 3, ["a"], "A", "a "])
def test_a_value_outside_the_list_is_refused_with_a_named_error(value):
    slot = slot_with(Loader())
    refuse = user_errors(lambda model: slot.choose("session", "client", model))
    with pytest.raises(gr.Error, match=r"model must be one of the listed models \(a, b, c\), got"):
        refuse(value)
    assert slot.chosen("session", "client") == "a" and slot.loaded == "a"


def test_a_choice_is_the_sessions_own():
    loader = Loader()
    slot = slot_with(loader)
    slot.choose("alice", "198.51.100.7", "b")
    assert slot.chosen("alice", "198.51.100.7") == "b"
    assert slot.chosen("bob", "198.51.100.8") == "a"  # never chose: the start-up model
    assert slot.chosen("alice", "203.0.113.66") == "a"  # Alice's id from another address is not Alice
    slot.forget("alice", "198.51.100.7")
    assert slot.chosen("alice", "198.51.100.7") == "a"


def test_a_switch_waits_for_the_running_request_and_two_models_are_never_loaded():
    loader = Loader(seconds=0.05)
    slot = slot_with(loader)
    events = []
    running = threading.Event()

    def answer_on_a():
        with slot.lease("a") as served:
            running.set()
            time.sleep(0.5)
            events.append(("a done", served.name, slot.loaded))

    def switch_to(name):
        running.wait()
        with slot.lease(name) as served:
            events.append((f"{name} served", served.name, slot.loaded))

    threads = [threading.Thread(target=answer_on_a)] + [threading.Thread(target=switch_to, args=(name,)) for name in "bcb"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert events[0] == ("a done", "a", "a")  # its model stayed loaded until it was done
    assert all(served == loaded for _, served, loaded in events)  # nobody ran on a model not loaded
    assert loader.held_while_loading == [None] * len(loader.loads)  # the previous model is let go before the next loads
    assert slot.loaded in ("b", "c") and len(loader.loads) <= 3


def test_requests_on_the_loaded_model_run_side_by_side():
    slot = slot_with(Loader())
    inside = threading.Barrier(2, timeout=5)

    def request():
        with slot.lease("a"):
            inside.wait()  # both are inside at once, or the barrier breaks

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not inside.broken


def test_a_switch_that_waits_too_long_is_told_busy_and_the_running_request_keeps_its_model():
    slot = slot_with(Loader(), wait_s=0.3)
    with slot.lease("a"):
        with pytest.raises(ValueError, match="busy switching models"):
            with slot.lease("b"):
                pass
        assert slot.loaded == "a"
        with pytest.raises(ValueError, match="busy switching models"):
            slot.choose("session", "client", "b")
        assert slot.chosen("session", "client") == "a"  # the refused choice is not kept
    with slot.lease("b") as served:  # once it is done, the switch goes through
        assert served.name == "b"


def test_a_model_that_cannot_be_loaded_says_so_and_the_previous_one_is_served_again():
    loader = Loader(broken=("c",))
    slot = slot_with(loader)
    with pytest.raises(ValueError, match=r"c could not be loaded \(disk full\); still serving a"):
        slot.choose("session", "client", "c")
    assert slot.loaded == "a"
    assert slot.chosen("session", "client") == "a"  # its next request is served, not refused again


def test_a_client_may_switch_only_so_often():
    clock = [0.0]
    slot = slot_with(Loader(), clock=lambda: clock[0])
    for turn in range(MODEL_SWITCHES):
        slot.choose("session", "client", "bc"[turn % 2])
    with pytest.raises(ValueError, match=f"{MODEL_SWITCHES} model switches a minute"):
        slot.choose("session", "client", "a")
    slot.choose("other session", "another client", "a")  # another client is not held back
    clock[0] += 61
    slot.choose("session", "client", "a")


def test_a_deployments_clip_model_is_listed(monkeypatch):
    monkeypatch.setenv("PRUNESID_VIDEO_MODEL", "LanguageBind/Video-LLaVA-7B-hf")
    assert picker_choices("tiny-random", hub_reachable=False)[-1] == "LanguageBind/Video-LLaVA-7B-hf"


# --- the hosted policy (a public deployment) ----------------------------------------------------


def test_two_visitors_on_different_models_alternate_and_neither_evicts_the_others_model():
    """Hosted: Alice on "a" and Bob on "b" alternate requests (in threads, side by side); every
    request runs on its own visitor's model, nothing is loaded after start and nothing is
    unloaded. Catches a hosted slot that still switches (one model loaded at a time): the
    first request of Bob's would unload Alice's model and load his."""
    freed = []
    loader = Loader()
    loader.slot = SimpleNamespace(loaded=None)
    slot = ModelSlot(SimpleNamespace(name="a"), ["a", "b", "c"], load=loader, free=lambda: freed.append(1), resident=True)
    assert loader.loads == ["b", "c"] and slot.resident == ["a", "b", "c"]  # all loaded at start
    slot.choose("alice", "198.51.100.7", "a")
    slot.choose("bob", "198.51.100.8", "b")
    seen, inside = [], threading.Barrier(2, timeout=5)

    def visitor(session, client):
        for _ in range(20):
            request = SimpleNamespace(session_hash=session, client=SimpleNamespace(host=client), headers={})
            with slot.lease_for(request) as served:
                inside.wait()  # both visitors hold their models at the same moment
                seen.append((session, served.name, tuple(slot.resident)))

    threads = [threading.Thread(target=visitor, args=args) for args in (("alice", "198.51.100.7"), ("bob", "198.51.100.8"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not inside.broken and len(seen) == 40
    assert {(session, name) for session, name, _ in seen} == {("alice", "a"), ("bob", "b")}
    assert all(resident == ("a", "b", "c") for *_, resident in seen)
    assert loader.loads == ["b", "c"] and freed == [] and slot.loads == 0  # no load, no unload after start


def test_hosted_choices_are_the_hosts_and_cost_no_switch(monkeypatch):
    """Hosted: the picker offers only the host's list; choosing is never rate-limited (it
    loads nothing), and a model outside the list is refused by name. Catches a hosted slot
    that lists the Hub models or counts switches."""
    slot = ModelSlot(SimpleNamespace(name="a"), ["a", "b"], load=lambda name: SimpleNamespace(name=name), resident=True)
    for turn in range(3 * MODEL_SWITCHES):
        assert slot.choose("session", "client", "ab"[turn % 2]).name == "ab"[turn % 2]
    with pytest.raises(ValueError, match=r"model must be one of the listed models \(a, b\)"):
        slot.choose("session", "client", CPU_MODEL)


def test_the_hosted_policy_is_on_for_spaces_or_a_host_setting(monkeypatch):
    for name in ("SYSTEM", "PRUNESID_SERVE", "PRUNESID_PUBLIC"):
        monkeypatch.delenv(name, raising=False)
    assert not models.hosted()
    monkeypatch.setenv("SYSTEM", "spaces")
    assert models.hosted()
    assert models.served_models("tiny-random") == ["tiny-random"] + [name for name in builtin_models() if name != "tiny-random"]
    monkeypatch.delenv("SYSTEM")
    monkeypatch.setenv("PRUNESID_SERVE", f"{GPU_MODEL}, tiny-random ,")
    assert models.hosted() and models.served_models(GPU_MODEL) == [GPU_MODEL, "tiny-random"]
    assert models.served_models("tiny-random-next") == ["tiny-random-next", GPU_MODEL, "tiny-random"]
