"""Which files a request may name: a folder next to the upload folder whose name merely
starts with it is outside it (a prefix test would let ``<upload folder>-private`` through)."""

from __future__ import annotations

import pytest

from demo.files import REFUSED, RefusedFile, allowed_path, read_image_bytes, upload_folder
from demo.video import VIDEO_REFUSED, read_video_bytes
from tests.conftest import scene


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    inside = tmp_path / "gradio" / "0123abcd"
    sibling = tmp_path / "gradio-private"
    for folder in (inside, sibling):
        folder.mkdir(parents=True)
    scene(64, 48).save(inside / "upload.png")
    scene(64, 48, seed=3).save(sibling / "secret.png")
    (sibling / "secret.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))
    assert upload_folder() == str((tmp_path / "gradio").resolve())
    return inside, sibling


def test_a_sibling_folder_whose_name_starts_with_the_upload_folders_is_refused(folders):
    inside, sibling = folders
    assert allowed_path(str(inside / "upload.png")) == str((inside / "upload.png").resolve())
    assert read_image_bytes({"path": str(inside / "upload.png")})[:4] == b"\x89PNG"
    for path in (sibling / "secret.png", sibling):
        with pytest.raises(RefusedFile):
            allowed_path(str(path))
    with pytest.raises(ValueError, match=REFUSED):
        read_image_bytes({"path": str(sibling / "secret.png")})
    with pytest.raises(ValueError, match=VIDEO_REFUSED):
        read_video_bytes({"path": str(sibling / "secret.mp4")})
