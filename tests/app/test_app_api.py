"""The launched demo, driven through its API with gradio_client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from prunesid import PruneSID
from tests.conftest import scene

ANALYZE_DEFAULTS = {"budget": 64, "groups": 0, "lam": 0, "grouping": "psca", "dynamic": False}


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app-images")
    paths = []
    for seed in range(10):
        path = folder / f"scene{seed}.png"
        scene(360 + 40 * seed, 300 + 25 * seed, seed=seed).save(path)
        paths.append(path)
    return paths


def test_analyze_returns_overlays_and_stats(client, images):
    groups_png, survivors_png, kept_png, quotas_png, stats, table = client.predict(image=handle_file(str(images[0])), **ANALYZE_DEFAULTS, api_name="/analyze")
    for overlay in (groups_png, survivors_png, kept_png, quotas_png):
        with Image.open(overlay) as drawn:
            assert min(drawn.size) >= 64
    assert stats["kept"] == 63 and stats["reserved"] == 1 and stats["visual_tokens"] == 64
    assert stats["groups"] == 16 and stats["groups_auto"] and stats["lam"] == pytest.approx(2.0)
    assert stats["tau"] == pytest.approx(stats["lam"] * stats["rho"], rel=1e-5)
    assert stats["phi"] == pytest.approx(1 - stats["rho"], abs=1e-6)
    assert sum(stats["kept_per_group"]) == 63
    assert "Fed to the LLM" in table["value"] if isinstance(table, dict) else "Fed to the LLM" in table


def test_manual_k_lambda_and_grouping_are_honoured(client, images):
    *_, stats, _ = client.predict(
        image=handle_file(str(images[1])), budget=128, groups=10, lam=3.0, grouping="kmeans", dynamic=False, api_name="/analyze"
    )
    assert stats["groups"] == 10 and not stats["groups_auto"] and stats["lam"] == pytest.approx(3.0)
    assert stats["grouping"] == "kmeans" and stats["kept"] == 127


def test_ten_concurrent_analyses_each_match_their_own_image(app_url, images, tiny_vlm):
    # Ten visitors, each from its own address (the app trusts X-Forwarded-For from loopback,
    # as from a reverse proxy): one client alone may have only CLIENT_SHARE requests at once.
    def analyze(numbered):
        number, path = numbered
        visitor = Client(app_url, verbose=False, headers={"X-Forwarded-For": f"198.51.100.{number + 1}"})
        job = visitor.submit(image=handle_file(str(path)), **ANALYZE_DEFAULTS, api_name="/analyze")
        return job.result(timeout=240)

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(analyze, enumerate(images)))
    for path, (*_, stats, _) in zip(images, results):
        expected = tiny_vlm.compress(tiny_vlm.encode(path), PruneSID(budget=64))[0]
        assert stats["rho"] == pytest.approx(float(expected.rho[0]), abs=1e-6), path.name
        assert stats["kept_per_group"] == expected.quotas[0, : int(expected.num_groups[0])].tolist(), path.name


def test_chat_answers_and_reports_the_visual_tokens(client, images):
    history, info, stats, table = client.predict(
        message="What is in this picture?", history=[], image=handle_file(str(images[2])), **ANALYZE_DEFAULTS, api_name="/chat"
    )
    assert [turn["role"] for turn in history] == ["user", "assistant"]
    assert "64 visual tokens" in info and "prefill" in info
    assert stats["visual_tokens"] == 64 and stats["timings_ms"]["prefill_ms"] > 0
    assert "prefill" in table


def test_a_corrupt_file_gets_an_error_and_the_app_keeps_serving(client, images, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(Exception, match="not an image|could not be decoded|cannot identify|truncated"):
        client.predict(image=handle_file(str(corrupt)), **ANALYZE_DEFAULTS, api_name="/analyze")
    *_, stats, _ = client.predict(image=handle_file(str(images[3])), **ANALYZE_DEFAULTS, api_name="/analyze")
    assert stats["visual_tokens"] == 64


def test_an_empty_message_gets_an_error(client, images):
    with pytest.raises(Exception, match="message is empty"):
        client.predict(message="   ", history=[], image=handle_file(str(images[0])), **ANALYZE_DEFAULTS, api_name="/chat")


def test_large_photos_are_analysed_and_impossible_ones_refused(client, tmp_path):
    from tests.media.test_images_large import write_jpeg, write_png, write_png_header_only

    for path in (write_jpeg(tmp_path / "photo-50mp.jpg", 8660, 5774), write_png(tmp_path / "scan-100mp.png", 10000, 10000)):
        *_, stats, _ = client.predict(image=handle_file(str(path)), **ANALYZE_DEFAULTS, api_name="/analyze")
        assert stats["kept"] == 63 and stats["visual_tokens"] == 64, path.name
    giant = write_png_header_only(tmp_path / "giant.png", 20000, 10000)
    with pytest.raises(Exception, match="200.0 MP; the largest accepted is 179.0 MP"):
        client.predict(image=handle_file(str(giant)), **ANALYZE_DEFAULTS, api_name="/analyze")
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(dot)
    with pytest.raises(Exception, match="1 x 1 pixels; each side must be at least 16"):
        client.predict(image=handle_file(str(dot)), **ANALYZE_DEFAULTS, api_name="/analyze")
