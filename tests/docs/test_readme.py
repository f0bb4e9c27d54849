"""The Python examples of the README and of the docs/ pages run as written (docs/methods.md
and docs/models.md are run by the tests of what they document: tests/methods, tests/pipeline).

Two kinds are adapted rather than skipped: an example that talks to the demo is pointed at
the app launched for the tests, and one that needs a 7B checkpoint from the Hub (first line
``# needs a GPU and the Hugging Face Hub``) runs as written except that ``load_vlm`` hands
back the offline built-in of the same family and ``photo.jpg`` is a generated picture: every
other call, keyword and attribute is the library's own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_ELSEWHERE = {"methods.md", "models.md"}
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in RUN_ELSEWHERE)
EXAMPLES = [
    (page, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
]
NEEDS_HUB = "# needs a GPU and the Hugging Face Hub"
DEMO_URL = "http://127.0.0.1:7860/"


def test_readme_has_examples():
    assert EXAMPLES


def test_every_page_with_examples_is_read():
    assert {page.name for page, _ in EXAMPLES} >= {"README.md", "library.md", "families.md", "demo.md"}


@pytest.mark.parametrize(
    "page, source",
    # an example that talks to the demo needs the launched app: the slow tier
    [pytest.param(page, source, marks=[pytest.mark.slow] if DEMO_URL in source else []) for page, source in EXAMPLES],
    ids=[f"{page.name}:{source.splitlines()[0][:40]}" for page, source in EXAMPLES],
)
def test_readme_example_runs(page, source, request, capsys, monkeypatch, tmp_path):
    if source.startswith(NEEDS_HUB):
        import prunesid
        from prunesid.vlm import load_vlm
        from tests.conftest import scene

        asked = []

        def offline(model, **kwargs):
            asked.append(model)
            if not isinstance(model, str) or model.count("/") != 1:
                raise AssertionError(f"the example asks for {model!r}, not a Hub id")
            family = "tiny-random-next" if "v1.6" in model or "next" in model.lower() else "tiny-random"
            return load_vlm(family, **{k: v for k, v in kwargs.items() if k in ("device", "dtype")})

        monkeypatch.setattr(prunesid, "load_vlm", offline, raising=False)
        photo = tmp_path / "photo.jpg"
        scene().save(photo)
        source = source.replace('"photo.jpg"', repr(str(photo)))
        exec(compile(source, str(page), "exec"), _module_namespace(monkeypatch))
        assert asked, "the example never loaded a model"
        return
    if DEMO_URL in source:
        source = source.replace(DEMO_URL, request.getfixturevalue("app_url"))
    exec(compile(source, str(page), "exec"), _module_namespace(monkeypatch))


def _module_namespace(monkeypatch) -> dict:
    """A real (temporary) module for an example to run in: dataclasses look their module up."""
    import sys
    import types

    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, "readme_example", module)
    return module.__dict__
