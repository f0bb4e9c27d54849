"""Which files the app may read: only those it was given.

The app's events run with ``preprocess=False`` (the library, not Gradio's PIL step, judges
the file), so an event receives whatever the request says about the image: a FileData dict
from an upload, but also a bare ``{"path": ...}`` or a plain string that no Gradio check has
looked at. Every handler therefore goes through :func:`read_image_bytes`, which reads a
file only when it is

- a regular file inside Gradio's upload folder (where uploads and the cached copies of the
  examples land), reached without leaving that folder through a symlink, or
- one of the bundled example images in ``assets/``.

Anything else is refused with the same message whether the path exists or not, so the
error text says nothing about the server's files. The bytes are read once, here, and handed
to the library: nothing opens the path again after the check.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from demo.limits import MAX_UPLOAD_BYTES

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_FILE_BYTES = MAX_UPLOAD_BYTES  # per upload (demo/limits.py)
REFUSED = "this image was not uploaded to this app: upload an image or pick one of the examples"


class RefusedFile(ValueError):
    """A request named a file this app was not given (same message for every such file)."""

    def __init__(self):
        super().__init__(REFUSED)


def example_images() -> list[str]:
    return sorted(str(path) for path in ASSETS.iterdir() if path.suffix.lower() in EXAMPLE_SUFFIXES)


def upload_folder() -> str:
    """Gradio's upload folder, as Gradio itself computes it, with symlinks resolved."""
    from gradio.utils import get_upload_folder

    return os.path.realpath(get_upload_folder())


def requested_path(image) -> str:
    """The path an event's image value names (FileData dict or string); ValueError if none."""
    return named_path(image, "no image: upload one or pick an example", RefusedFile)


def named_path(value, missing: str, refused=RefusedFile) -> str:
    """The path an event's file value names (FileData dict, string or path): ValueError
    ``missing`` when there is none, ``refused()`` when it names no path."""
    if value is None:
        raise ValueError(missing)
    path = value.get("path") if isinstance(value, dict) else value
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise refused()
    return path


def allowed_path(path: str) -> str:
    """The resolved path if this app may read it; :class:`RefusedFile` otherwise."""
    if "\x00" in path or not os.path.isabs(path) or ".." in Path(path).parts:
        raise RefusedFile()
    resolved = os.path.realpath(path)
    if resolved in _examples():
        return resolved
    folder = upload_folder()
    if os.path.commonpath([folder, resolved]) == folder and resolved != folder:
        return resolved
    raise RefusedFile()


def read_image_bytes(image, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the image an event names, if the app was given that file."""
    path = allowed_path(requested_path(image))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:  # missing, or swapped for a symlink since the check
        raise RefusedFile() from error
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile()
        if info.st_size > max_bytes:
            raise ValueError(f"the image file is {info.st_size / 2**20:.1f} MB; the largest accepted is {max_bytes / 2**20:.0f} MB")
        return handle.read(max_bytes + 1)


def _examples() -> set[str]:
    return {os.path.realpath(path) for path in example_images()}
