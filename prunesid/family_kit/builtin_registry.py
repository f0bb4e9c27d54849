"""The registry of built-in models and the directory each is loaded from.

A built-in is a builder (a tiny model and its processor, in memory) and the Hub layout of the
repository it mirrors. :func:`builtin_directory` writes it in that layout once and hands the
directory to ``load_vlm``, which loads it like any downloaded checkpoint: what the tests run
on the built-ins is the path users take.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prunesid.family_kit.hub import HubLayout, write_checkpoint


@dataclass(frozen=True)
class Builtin:
    name: str
    build: Callable[[], tuple]  # () -> (model, processor), seeded: identical on every machine
    layout: HubLayout


BUILTINS: dict[str, Builtin] = {}
_WRITTEN: dict[str, Path] = {}


def register_builtin(name: str, layout: HubLayout):
    """Register the decorated builder as the built-in ``name``, written in ``layout``."""

    def register(build):
        BUILTINS[name] = Builtin(name, build, layout)
        return build

    return register


def write_builtin(name: str, known: dict[str, Builtin]) -> Path:
    """The directory holding the built-in ``name`` (one of ``known``) in its Hub layout, written on first use.

    It lives under the temporary directory, keyed by the name and a fingerprint of the code
    that writes it (this package and the transformers version), so other processes (the CLI,
    the demo, lmms-eval) reuse it and a change of the builders writes a new one.
    """
    if name not in known:
        raise ValueError(f"unknown built-in {name!r}; built-ins: {', '.join(known)}")
    written = _WRITTEN.get(name)
    if written is not None and (written / "config.json").is_file():
        return written
    root = Path(tempfile.gettempdir()) / f"prunesid-builtins-{_user()}"
    target = root / f"{name}-{_fingerprint()}"
    if not (target / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        model, processor = known[name].build()
        write_checkpoint(model, processor, scratch, known[name].layout)
        try:
            scratch.rename(target)  # atomic: a directory that exists is complete
        except OSError:  # another process wrote it first
            shutil.rmtree(scratch, ignore_errors=True)
    _WRITTEN[name] = target
    return target


def _fingerprint() -> str:
    import transformers

    digest = hashlib.sha256(transformers.__version__.encode())
    # the writer, every family's built-ins, and the checkpoint formats of families that write their own (Mini-Gemini)
    here, families = Path(__file__).parent, Path(__file__).parent.parent / "families"
    sources = [here / "hub.py", here / "builtin_registry.py", *sorted(families.glob("*/builtins.py")), *sorted(families.glob("mini_gemini/*.py"))]
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def _user() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"
