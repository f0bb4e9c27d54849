"""The launched app reads only files it was given, whatever a raw request says.

Plain HTTP (urllib / httpx), no gradio_client: gradio_client uploads local files itself and
would hide what a hand-made request can do. Every event of the page that takes the image is
called, the page-only ones too (the browser reaches them by index, so anybody can), with
payloads that name server files in every form a request can.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest

from demo.errors import MALFORMED
from demo.files import MAX_FILE_BYTES, REFUSED
from demo.video import VIDEO_REFUSED
from tests.conftest import scene

GRADIO_REFUSAL = "not uploaded by a user"  # Gradio's own check of FileData payloads (with meta)
GRADIO_NEEDS_META = "'meta' field must be explicitly provided"  # Gradio's check of video payloads
REFUSALS = (REFUSED, VIDEO_REFUSED, GRADIO_REFUSAL, GRADIO_NEEDS_META, "valid dictionary", MALFORMED)
META = {"_type": "gradio.FileData"}


def _upload_folder() -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _sse(url: str, until) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data:"):
                message = json.loads(line[5:]) if line[5:].strip() not in ("", "null") else None
                if until(message):
                    return message
    raise AssertionError(f"the stream of {url} ended without a result")


@pytest.fixture(scope="module")
def config(app_url):
    with urllib.request.urlopen(app_url + "config", timeout=30) as response:
        return json.loads(response.read())


FILE_INPUTS = ("image", "video")  # components whose value names a file on the server


@pytest.fixture(scope="module")
def file_events(config):
    """Every event of the page with a file among its inputs, each input as (type, default)."""
    components = {component["id"]: component for component in config["components"]}
    events = [dep for dep in config["dependencies"] if any(components[i]["type"] in FILE_INPUTS for i in dep["inputs"])]
    names = {dep.get("api_name") for dep in events}
    # The public endpoints and the page's own events must all be in the sweep.
    assert {"analyze", "chat", "compare_groupings", "compare_answers", "explain", "refresh", "send_message", "retry",
            "analyze_method", "compare_methods", "analyze_video", "chat_video"} <= names, names
    inputs = lambda dep: [(components[i]["type"], components[i].get("props", {}).get("value")) for i in dep["inputs"]]
    return [(dep, inputs(dep)) for dep in events]


def _arguments(kinds: list[tuple], image) -> list:
    values = {"checkbox": False, "textbox": "What is in the picture?", "chatbot": [], "number": 20}
    # Sliders and radios (grouping, method) keep the page's own default value.
    return [image if kind in FILE_INPUTS else default if kind in ("radio", "slider") else values.get(kind, default) for kind, default in kinds]


def _call(app_url: str, dependency: dict, kinds: list[tuple], image) -> dict:
    """Run one event as the page would (by index) and return Gradio's final message:
    ``{"success": bool, "output": ...}``."""
    body = {
        "data": _arguments(kinds, image),
        "fn_index": dependency["id"],
        "session_hash": uuid.uuid4().hex,
        "event_data": {"index": [40, 40], "value": None, "selected": True},
    }
    if not dependency.get("queue", True):
        status, payload = _post(app_url + "gradio_api/run/predict", body)
        return {"success": status == 200, "output": payload}
    status, joined = _post(app_url + "gradio_api/queue/join", body)
    assert status == 200, joined
    return _sse(
        app_url + f"gradio_api/queue/data?session_hash={body['session_hash']}",
        lambda message: message and message.get("msg") == "process_completed",
    )


def _error_text(result: dict) -> str:
    """The refusal's text: the error, or for the chat's send (which answers a refused question
    with a line under the chat instead of an error) that line."""
    output = result.get("output") or {}
    if not isinstance(output, dict):
        return ""
    if result.get("success") and isinstance(output.get("data"), list) and output["data"]:
        line = output["data"][-1]
        return line if isinstance(line, str) and line.startswith("⚠️ Not sent") else ""
    return str(output.get("error", ""))


def _mentions_a_file(output) -> bool:
    return "gradio_api/file=" in json.dumps(output) or '"path"' in json.dumps(output)


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A perfectly good image the server could read, outside the upload folder."""
    path = tmp_path_factory.mktemp("server-files") / "secret.png"
    scene(320, 240, seed=11).save(path)
    assert not str(path.resolve()).startswith(str(_upload_folder()))
    return path


def _payloads(outside: Path) -> dict[str, object]:
    folder = _upload_folder()
    folder.mkdir(parents=True, exist_ok=True)
    link_dir = Path(tempfile.mkdtemp(dir=folder))
    link = link_dir / "innocent.png"
    link.symlink_to(outside)
    climbing = str(folder / ".." / os.path.relpath(outside, folder.parent))
    sibling = Path(f"{folder}-private")  # a name that merely starts with the upload folder's
    sibling.mkdir(exist_ok=True)
    secret = sibling / "secret.png"
    secret.write_bytes(outside.read_bytes())
    return {
        "sibling folder named like the upload folder": {"path": str(secret)},
        "sibling folder with meta": {"path": str(secret), "meta": META},
        "path without meta": {"path": str(outside)},
        "path with meta": {"path": str(outside), "meta": META},
        "bare string": str(outside),
        "relative path": {"path": "assets/street.png"},
        "relative path with meta": {"path": "assets/street.png", "meta": META},
        "dot-dot out of the upload folder": {"path": climbing},
        "dot-dot with meta": {"path": climbing, "meta": META},
        "symlink in the upload folder": {"path": str(link)},
        "symlink with meta": {"path": str(link), "meta": META},
        "the upload folder itself": {"path": str(folder)},
        "url only": {"url": "http://127.0.0.1:1/secret.png", "meta": META},
    }


def test_every_file_event_refuses_server_paths(app_url, file_events, outside):
    payloads = _payloads(outside)
    for dependency, kinds in file_events:
        for name, image in payloads.items():
            result = _call(app_url, dependency, kinds, image)
            label = f"{dependency.get('api_name')} with {name}"
            error = _error_text(result)
            assert result.get("success") is False or error, f"{label}: served {str(result)[:300]}"
            assert any(refusal in error for refusal in REFUSALS), f"{label}: {error!r}"
            assert not _mentions_a_file(result.get("output")), f"{label}: {str(result)[:300]}"


def test_the_refusal_does_not_say_whether_a_file_exists(app_url, file_events, outside):
    analyze = next((dep, kinds) for dep, kinds in file_events if dep.get("api_name") == "analyze")
    missing = outside.with_name("no-such-file.png")
    errors = {_error_text(_call(app_url, *analyze, {"path": str(path)})) for path in (outside, missing, outside.parent)}
    assert errors == {REFUSED}


def _upload(app_url: str, path: Path) -> str:
    response = httpx.post(app_url + "gradio_api/upload", files={"files": (path.name, path.open("rb"), "image/png")}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()[0]


def test_an_uploaded_file_is_served_with_or_without_meta(app_url, file_events, outside):
    uploaded = _upload(app_url, outside)
    analyze = next((dep, kinds) for dep, kinds in file_events if dep.get("api_name") == "analyze")
    for image in ({"path": uploaded, "meta": META}, {"path": uploaded}):
        result = _call(app_url, *analyze, image)
        assert result.get("success") is True, str(result)[:400]
        stats = result["output"]["data"][4]
        assert stats["kept"] == 63


def test_an_upload_over_the_size_limit_is_refused(app_url, tmp_path):
    big = tmp_path / "big.png"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(MAX_FILE_BYTES + 1)
    with big.open("rb") as handle:
        response = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.png", handle, "image/png")}, timeout=120)
    assert response.status_code == 413, response.text[:200]
    assert "maximum allowed size" in response.text
