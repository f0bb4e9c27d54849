"""The press registry: what a press must declare, what it refuses, and that no front end
names a method (everything they show or check is derived from the declarations)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from prunesid.methods import PRESSES, Press, PressInfo, Variant, default_method, method_choices, option, options_of, presses
from prunesid.methods.registry import build_press, options_table, register_press

ROOT = Path(__file__).resolve().parents[2]


def _declared(name: str, **namespace):
    """A minimal press class with ``namespace`` as its body, registered as ``name``."""
    body = {"__annotations__": {}, "compress": lambda self, tokens: None, **namespace}
    cls = type("Scratch", (Press,), body)
    return register_press(name)(dataclass(frozen=True)(cls))


INFO = PressInfo(label="Scratch", paper="", summary="a test press")


# --- what a press must declare -----------------------------------------------------------


def test_a_declared_press_is_registered_with_its_options(scratch_registry):
    cls = _declared("scratch", info=INFO, __annotations__={"width": "int | None"}, width=option(None, "how wide", minimum=2))
    assert presses()["scratch"] is cls and cls.name == "scratch"
    (budget, keep_cls, width) = options_of(cls)
    assert (budget.name, keep_cls.name) == ("budget", "keep_cls")  # every press has these
    assert (width.kind, width.optional, width.default, width.minimum, width.flags) == (int, True, None, 2, ["--width"])
    assert "width: how wide [>= 2; or None; default None]" in cls.__doc__  # the docstring lists the declarations
    assert cls(budget=8, width=3).settings() == {"budget": 8, "keep_cls": True, "width": 3}
    with pytest.raises(ValueError, match=r"width must be at least 2 or None, got 1"):
        cls(width=1)
    with pytest.raises(TypeError, match=r"width must be an integer or None, got '3'"):
        cls(width="3")


@pytest.mark.parametrize(
    ("name", "namespace", "error", "message"),
    [
        ("scratch", {"info": INFO, "__annotations__": {"width": "int"}, "width": 3}, TypeError, r"Scratch.width is not declared: make it with option"),
        ("scratch", {}, TypeError, r"Scratch declares no info = PressInfo"),
        ("Scratch", {"info": INFO}, ValueError, r"a press name is lower-case letters"),
        ("none", {"info": INFO}, ValueError, r"not 'none'"),
        ("prunesid", {"info": INFO}, ValueError, r"press name 'prunesid' is taken by prunesid.methods.prunesid.PruneSID"),
        ("scratch", {"info": PressInfo("S", "", "s", requires=("depth",))}, ValueError, r"unknown inputs \['depth'\]"),
        ("scratch", {"info": PressInfo("S", "", "s", variants=(Variant("s-x", "S-X", {"speed": 2}, "x"),))}, ValueError,
         r"variant 'S-X' sets unknown options \['speed'\]"),
        ("scratch", {"info": INFO, "__annotations__": {"weights": "list"}, "weights": option(None, "w")}, TypeError,
         r"an option is bool, int, float or str"),
    ],
)
def test_an_incomplete_declaration_is_refused_naming_what_is_missing(scratch_registry, name, namespace, error, message):
    with pytest.raises(error, match=message):
        _declared(name, **namespace)
    assert set(PRESSES) == set(presses()) and "scratch" not in PRESSES


def test_every_builtin_press_declares_a_label_a_summary_and_options_with_help():
    labels = [choice.label for choice in method_choices()]
    assert len(labels) == len(set(labels))  # a menu entry names one thing
    assert default_method() == next(iter(presses())) == "prunesid"
    for name, cls in presses().items():
        assert cls.info.label and cls.info.summary and cls.name == name
        for spec in options_of(cls):
            assert len(spec.help) > 10, f"{name}.{spec.name} has no help"
            assert spec.default is None or cls().settings()[spec.name] == spec.default


def test_a_variant_is_listed_right_after_its_press_and_builds_a_press_whose_budget_varies():
    choices = method_choices()
    for index, choice in enumerate(choices):
        if choice.settings:  # a variant
            assert choices[index - 1].method == choice.method
            press = choice.press(48)
            assert not press.budget_is_fixed and press.needs_calibration
            assert press.calibrated(0.4).settings()["phi_ref"] == 0.4 and not press.calibrated(0.4).needs_calibration
        else:
            assert choice.press(48).budget_is_fixed and not choice.press(48).needs_calibration


def _bad_values(spec):
    """Values the declaration of ``spec`` refuses, with the message naming the option."""
    name = spec.name
    if spec.kind is bool:
        yield 1, rf"{name} must be True or False"
    if spec.choices is not None:
        yield "no-such-choice", rf"{name} must be one of"
    if spec.minimum is not None:
        yield spec.kind(spec.minimum) - 1, rf"{name} must be"
    if spec.above is not None:
        yield spec.kind(spec.above), rf"{name} must be"
    if spec.kind in (int, float):
        yield "7", rf"{name} must be"
    if not spec.optional:
        yield None, rf"{name} must"


CASES = [(method, spec, value, message) for method, cls in PRESSES.items() for spec in options_of(cls) for value, message in _bad_values(spec)]


@pytest.mark.parametrize(("method", "spec", "value", "message"), CASES, ids=[f"{m}-{s.name}-{v!r}" for m, s, v, _ in CASES])
def test_every_press_refuses_what_its_declaration_refuses(method, spec, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        PRESSES[method](**{spec.name: value})


def test_build_press_parses_typed_text_and_names_the_option():
    press = build_press("prunesid", {"budget": "32", "dynamic": "true", "lam": "None", "phi_ref": "0.5", "grouping": "kmeans"})
    assert (press.budget, press.dynamic, press.lam, press.phi_ref, press.grouping) == (32, True, None, 0.5, "kmeans")
    with pytest.raises(ValueError, match=r"--contextual is not an option of method 'divprune'; its options: budget, keep_cls, space"):
        build_press("divprune", {"contextual": "3"}, shown=lambda name: f"--{name}")
    with pytest.raises(ValueError, match=r"method must be one of \['prunesid', 'visionzip', 'divprune', 'random', 'uniform'"):
        build_press("fastv", {})


# --- no front end names a method ----------------------------------------------------------

FRONT_ENDS = [ROOT / "prunesid" / "cli.py", *sorted((ROOT / "demo").glob("*.py")), *sorted((ROOT / "viz").glob("*.py")),
              *sorted((ROOT / "prunesid" / "eval").glob("*.py"))]
# The page that explores the method of the paper itself, with its own controls (K, lambda,
# grouping) and drawings (groups, survivors): the method is its subject, not a choice.
# controls: the explorer's sliders become its PruneSID press; stats: that press's own figures (K, lambda, rho, tau)
EXPLORER = {"demo/handlers.py", "demo/video.py", "demo/labels.py", "demo/controls.py", "demo/stats.py"}  # labels: the K and lambda sliders
# Also the package's name, or English words (and grouping names): found as text only where a
# front end would branch or look up by them (a comparison, a subscript, a dict key).
AMBIGUOUS = {"prunesid", "random", "uniform"}


def method_names():
    names, classes = set(), set()
    for name, cls in presses().items():
        classes.add(cls.__name__)
        names |= {name, cls.info.label}
        for variant in cls.info.variants:
            names |= {variant.key, variant.label}
    return names, classes


def press_fields() -> set[str]:
    """Every press's option names and the result fields and keys its diagnostics declare."""
    fields = set()
    for cls in presses().values():
        fields |= {spec.name for spec in options_of(cls)}
        fields |= {key for key, _label in cls.info.diagnostics.report}
        fields |= {cls.info.diagnostics.anchors} - {None}
    return fields


def naming_sites(source: str, names: set[str], classes: set[str]) -> list[str]:
    """Where ``source`` names a method: a press class, a method's name or label as a string
    (not a docstring, not argparse's ``prog``), or an unambiguous name anywhere in the text;
    or tests a press's fields: ``getattr`` / ``hasattr`` of an option or diagnostic by name,
    ``"rho" in view``."""
    lower = {name.lower() for name in names}
    fields = press_fields()
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skipped.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.keyword) and node.arg == "prog":
            skipped.add(id(node.value))  # the command's own name
    branching = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            branching |= {id(part) for part in [node.left, *node.comparators]}
        elif isinstance(node, ast.Subscript):
            branching.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            branching |= {id(key) for key in node.keys if key is not None}
    sites = []
    for node in ast.walk(tree):
        probe = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            probe = node.args[1]
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            probe = node.left
        if isinstance(probe, ast.Constant) and probe.value in fields:
            sites.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Name) and node.id in classes or isinstance(node, ast.Attribute) and node.attr in classes:
            sites.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.alias) and node.name in classes:
            sites.append(f"line {node.lineno}: import {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            text = node.value.strip().lower()
            if text in lower and (text not in AMBIGUOUS - {"prunesid"} or id(node) in branching):
                sites.append(f"line {node.lineno}: {node.value!r}")
    for name in sorted(n for n in names | classes if n.lower() not in AMBIGUOUS):
        for found in re.finditer(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", source, re.IGNORECASE):
            sites.append(f"line {source[:found.start()].count(chr(10)) + 1}: {found.group()}")
    return sites


def test_no_front_end_names_a_method():
    names, classes = method_names()
    found = {}
    for path in FRONT_ENDS:
        relative = path.relative_to(ROOT).as_posix()
        if relative not in EXPLORER:
            sites = naming_sites(path.read_text(), names, classes)
            if sites:
                found[relative] = sites
    assert found == {}


@pytest.mark.parametrize(
    "line",
    [
        'if args.method != "prunesid": pass',
        "from prunesid import VisionZip",
        "press = methods.DivPrune(budget=3)",
        "labels = {'random': 'random tokens'}",
        "choice = CHOICES['PruneSID-Dyn']",
        "# the VisionZip merged tokens",
        "x = 'divprune'",
        'merged = getattr(result, "targets", None)',
        'if hasattr(selection, "rho"): pass',
        'if "rho" not in view: pass',
        'dynamic = getattr(press, "dynamic", False)',
    ],
)
def test_the_scan_finds_a_method_named_in_code(line):
    names, classes = method_names()
    assert naming_sites(line + "\n", names, classes)


def test_the_scan_leaves_prose_the_package_and_groupings_alone():
    names, classes = method_names()
    source = '"""PruneSID demo, random colours."""\nimport prunesid.eval\nCHOICES = ["psca", "kmeans", "random"]\nparser(prog="prunesid")\n'
    assert naming_sites(source, names, classes) == []


# --- the documentation -------------------------------------------------------------------


def test_docs_list_every_press_its_paper_and_options():
    """docs/methods.md holds each press's options table as its declaration writes it
    (``options_table``), so the page cannot drift from the code."""
    text = (ROOT / "docs" / "methods.md").read_text()
    for name, cls in presses().items():
        assert f"`{name}`" in text and cls.info.label in text and cls.info.paper in text
        assert options_table(cls) in text, f"docs/methods.md: regenerate {name}'s table with options_table({cls.__name__})"
    for words in ("register_press", "prunesid.presses", "PRUNESID_PLUGINS", "PressInfo", "option("):
        assert words in text


def test_the_docs_examples_run(scratch_registry, monkeypatch):
    """Both examples of docs/methods.md: a press on a model, and a new method, which then
    runs through the same path as the built-ins."""
    import torch

    from prunesid.methods import VisionTokens

    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "methods.md").read_text(), re.DOTALL)
    assert len(blocks) == 2
    exec(compile(blocks[0], "docs/methods.md", "exec", dont_inherit=True), {})
    namespace = {}
    exec(compile(blocks[1], "docs/methods.md", "exec", dont_inherit=True), namespace)
    press = build_press("first", {"budget": "5", "skip": "2"})
    result = press.compress(VisionTokens(features=torch.randn(1, 16, 8), cls_slot=True))
    assert result.indices[0].tolist() == [2, 3, 4, 5] and result.reserved == 1 and "first" in presses()


def test_the_preset_a_press_reads_its_budget_through():
    assert {name: cls().selection_preset("qwen2-vl") for name, cls in presses().items()} == dict.fromkeys(presses(), "qwen2-vl")
    assert presses()["prunesid"](preset="llava").selection_preset("qwen2-vl") == "llava"  # forced by the user
