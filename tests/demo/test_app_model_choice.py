"""Which model the app serves (demo/model_choice.py), with the network simulated: never a
real request. Offline is decided at once (HF_HUB_OFFLINE) or by a probe whose deadline
holds whatever the network does; a reachable Hub without a GPU gives the small CPU LLaVA."""

from __future__ import annotations

import http.server
import socket
import threading
import types

import pytest
import torch

import demo.model_choice as model_choice
from demo.model_choice import CPU_MODEL, FALLBACK_MODEL, GPU_MODEL, banner, choose_model, load_with_fallback, offline_reason


@pytest.fixture(autouse=True)
def no_user_choice(monkeypatch):
    monkeypatch.delenv("PRUNESID_MODEL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_choice, "_cached_snapshot", lambda name: None)  # nothing downloaded


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(model_choice, "gpu_available", lambda: False)


@pytest.fixture
def hub_answers(monkeypatch):
    """A local server standing in for the Hub: answers every request with 404."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


@pytest.fixture
def hub_silent(monkeypatch):
    """A local socket that accepts connections and never answers (a black hole)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    yield
    listener.close()


def test_no_gpu_and_a_reachable_hub_serve_the_small_cpu_llava(no_gpu, hub_answers):
    assert offline_reason() is None
    choice = choose_model(None)
    assert choice.name == CPU_MODEL == "llava-hf/llava-interleave-qwen-0.5b-hf" and choice.offline is None


def test_a_gpu_and_a_reachable_hub_serve_llava_1_5_7b(monkeypatch, hub_answers):
    monkeypatch.setattr(model_choice, "gpu_available", lambda: True)
    assert choose_model(None).name == GPU_MODEL == "llava-hf/llava-1.5-7b-hf"


def test_hf_hub_offline_decides_without_a_request(monkeypatch, no_gpu):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_choice, "_fetch", lambda *args: pytest.fail("the Hub was asked although HF_HUB_OFFLINE is set"))
    choice = choose_model(None)
    assert choice.name == FALLBACK_MODEL and choice.offline == "HF_HUB_OFFLINE is set"


@pytest.mark.timeout(60)
def test_a_silent_hub_counts_as_offline_by_the_probes_deadline(no_gpu, hub_silent):
    assert model_choice.PROBE_TIMEOUT_S <= 5
    reason = offline_reason()
    assert reason is not None and "127.0.0.1" in reason


@pytest.mark.timeout(60)
def test_the_deadline_holds_even_when_the_request_never_returns(monkeypatch, no_gpu):
    # A request stuck where no socket timeout applies (e.g. a DNS lookup): the probe does not wait for it.
    monkeypatch.setattr(model_choice, "_fetch", lambda *args: threading.Event().wait())
    assert offline_reason(timeout=0.5) == "no answer from huggingface.co within 0.5 s"


@pytest.mark.timeout(120)
def test_offline_falls_back_to_tiny_random_with_a_banner_and_no_download(monkeypatch, no_gpu, hub_silent):
    monkeypatch.setattr(model_choice, "PROBE_TIMEOUT_S", 1.0)
    loaded = []
    real_load = model_choice.load_vlm
    monkeypatch.setattr(model_choice, "load_vlm", lambda name, **kwargs: loaded.append(name) or real_load(name, **kwargs))
    monkeypatch.setattr(model_choice, "_download", lambda name: pytest.fail(f"tried to download {name} while offline"))
    vlm, text = load_with_fallback(choose_model(None))
    assert vlm.name == FALLBACK_MODEL and loaded == [FALLBACK_MODEL]
    assert f"{CPU_MODEL} is not downloaded and the Hugging Face Hub is unreachable" in text
    assert "127.0.0.1" in text and "random weights" in text


def test_a_hub_model_asked_for_while_offline_is_not_attempted(monkeypatch, hub_silent):
    monkeypatch.setattr(model_choice, "PROBE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(model_choice, "_download", lambda name: pytest.fail("download attempted while offline"))
    vlm, text = load_with_fallback(choose_model("llava-hf/llava-v1.6-vicuna-7b-hf"))
    assert vlm.name == FALLBACK_MODEL
    assert "llava-hf/llava-v1.6-vicuna-7b-hf could not be loaded (it is not downloaded and the Hugging Face Hub is unreachable" in text


def test_a_failed_download_falls_back_and_says_so(monkeypatch, no_gpu, hub_answers):
    def broken(name):
        raise OSError("simulated: connection reset during download")

    monkeypatch.setattr(model_choice, "_download", broken)
    vlm, text = load_with_fallback(choose_model(None))
    assert vlm.name == FALLBACK_MODEL and "simulated: connection reset during download" in text


def test_a_downloaded_model_is_loaded_from_the_cache_under_its_hub_name(monkeypatch, tiny_vlm, tmp_path, no_gpu):
    snapshot = tmp_path / "snapshot"
    tiny_vlm.model.save_pretrained(snapshot)
    tiny_vlm.processor.save_pretrained(snapshot)
    monkeypatch.setattr(model_choice, "_cached_snapshot", lambda name: str(snapshot) if name == CPU_MODEL else None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # cached: offline does not matter
    vlm, text = load_with_fallback(choose_model(None))
    assert vlm.name == CPU_MODEL and "random weights" not in text
    assert f"**Model:** `{CPU_MODEL}` on CPU" in text and "No GPU here" in text


def test_the_banner_names_the_hardware():
    gpu_vlm = types.SimpleNamespace(name=GPU_MODEL, device=torch.device("cuda"), dtype=torch.float16)
    assert banner(gpu_vlm) == f"**Model:** `{GPU_MODEL}` on CUDA, float16."
