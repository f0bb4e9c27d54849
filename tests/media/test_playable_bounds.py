"""The page-only re-encode (demo/playable.py) under lying clip headers, and its temp files.

An MJPEG header saying 64 x 64 over 12000 x 12000 frames once cost the re-encode its full
decode per frame (+1.5 GB for 16000 x 16000); its WebM copies were never deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo import playable
from demo.playable import copies_folder, playable_copy, served_copy
from tests import hostile_media as corpus

ROOT = Path(__file__).resolve().parents[2]


def _peak_growth_mb(clip: Path) -> dict:
    """VmHWM growth of a fresh process re-encoding ``clip`` (after warming PyAV on a small one)."""
    code = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from demo.playable import playable_copy\n"
        "def peak(): return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0] / 1024\n"
        "warm = playable_copy(sys.argv[2], folder=sys.argv[4])\n"
        "before = peak()\n"
        "copy = playable_copy(sys.argv[1], folder=sys.argv[4])\n"
        "print(json.dumps({'growth_mb': peak() - before, 'copy': copy, 'warm': warm}))\n"
    )
    folder = clip.parent / "copies"
    folder.mkdir(exist_ok=True)
    small = corpus.mjpeg_with_sizes(clip.parent / "small.avi", [(64, 64)] * 4)
    out = subprocess.run([sys.executable, "-c", code, str(clip), str(small), str(ROOT), str(folder)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_lying_mjpeg_header_is_not_decoded_at_the_frames_real_size(tmp_path):
    """Catches the re-encode's decoder without FFmpeg's max_pixels: 12000 x 12000 frames behind a
    64 x 64 header would each be decoded in full (216 MB a frame)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads /proc")
    clip = corpus.mjpeg_with_sizes(tmp_path / "lying.avi", [(64, 64)] + [(12000, 12000)] * 3)
    result = _peak_growth_mb(clip)
    assert result["warm"] is not None  # a small MJPEG clip is re-encoded
    assert result["copy"] is None  # the lying clip is left as it is
    assert result["growth_mb"] < 64, result


def test_frames_of_another_size_than_the_header_stop_the_copy(tmp_path):
    """Catches a header that lies within the pixel limit: the copy would be scaled from frames
    the bounds were never computed for."""
    clip = corpus.mjpeg_with_sizes(tmp_path / "lying.avi", [(64, 64)] * 2 + [(1920, 1080)] * 3)
    assert playable_copy(str(clip), folder=str(tmp_path)) is None
    assert not list(tmp_path.glob("*.webm"))  # the partial copy is deleted


def test_the_copy_is_deleted_when_its_request_ends_and_stale_ones_are_swept(tmp_path, monkeypatch):
    """Catches copies left in the temp folder (three calls on a 12 MB clip once left 21.8 MB)."""
    monkeypatch.setattr(playable.tempfile, "gettempdir", lambda: str(tmp_path))
    clip = corpus.mjpeg_with_sizes(tmp_path / "clip.avi", [(64, 64)] * 4)
    stale = Path(copies_folder()) / "left-behind.webm"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    with served_copy(str(clip)) as copy:
        assert copy is not None and os.path.exists(copy) and Path(copy).parent == Path(copies_folder())
        assert not stale.exists()
    assert not os.path.exists(copy)
    assert os.listdir(copies_folder()) == []
