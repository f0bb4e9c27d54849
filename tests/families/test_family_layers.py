"""The layers around the family folders, read from the imports of every module.

The family folders (prunesid/families) sit on top of the library, as plug-ins do: the library
finds them by walking the package (prunesid/family_kit/discovery.py) and never imports one by
name, while a folder's front ends' classes (``vllm_model*``, ``lmms_eval_model``) build on the
press path and the vLLM and lmms-eval machinery. What the folders share (prunesid/family_kit)
sits below the press path. Inside a folder, the family itself (declaration, adapter, layout,
built-ins, model code) stays below the press path too, so that loading a model never imports
an engine. Catches an adapter or a built-in importing the press path or a front end, a library
module importing a family by name (the circle families -> pipeline -> families), and the kit
importing what is built on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ROOT / "prunesid" / "families"
KIT = ROOT / "prunesid" / "family_kit"
ABOVE = ("prunesid.pipeline", "prunesid.vlm", "prunesid.eval", "prunesid.vllm", "prunesid.cli", "demo", "viz")
LIBRARY = [*(ROOT / "prunesid").rglob("*.py"), *(ROOT / "demo").rglob("*.py"), *(ROOT / "viz").rglob("*.py"), ROOT / "app.py"]


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:  # the module, and each name as a module of it
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def is_front_end_class(path: Path) -> bool:
    return path.stem.startswith(("vllm_model", "lmms_eval_model")) or "vllm_models" in path.parts


def test_the_family_modules_import_nothing_above_them():
    wrong = {
        str(path.relative_to(ROOT)): sorted(name for name in imported(path) if name.startswith(ABOVE))
        for path in FAMILIES.rglob("*.py")
        if not is_front_end_class(path)
    }
    assert not {path: names for path, names in wrong.items() if names}


def test_no_library_module_imports_a_family_by_name():
    """Only the walk of the folders loads a family: a library, demo or viz module that imports
    ``prunesid.families.<name>`` (or a front end's class) puts the folders below the press path
    again, and adding a family would mean editing that module."""
    importers = {
        str(path.relative_to(ROOT)): sorted(name for name in imported(path) if name.startswith("prunesid.families."))
        for path in LIBRARY
        if FAMILIES not in path.parents
    }
    assert importers  # the rule has something to check
    assert not {path: names for path, names in importers.items() if names}


def test_the_kit_imports_nothing_built_on_it():
    """prunesid/family_kit is what the folders and the press path stand on."""
    wrong = {
        str(path.relative_to(ROOT)): sorted(name for name in imported(path) if name.startswith((*ABOVE, "prunesid.families")))
        for path in KIT.rglob("*.py")
    }
    assert len(wrong) >= 9  # every module of the kit was read
    assert not {path: names for path, names in wrong.items() if names}


def test_each_declaration_names_the_model_options_its_families_take():
    """A family's declared options (the words of refusals and help) are exactly the model
    options its adapters' ``__init__`` take. Catches an option added to an adapter but not
    declared (refused with "no family" words) or declared but not taken."""
    import inspect

    from prunesid.family_kit import declarations, load_families
    from prunesid.family_kit.options import FAMILY_OPTIONS

    taken: dict[str, set] = {}
    for spec in load_families().values():
        package = spec.family.__module__.rsplit(".", 1)[0]
        taken.setdefault(package, set()).update(name for name in inspect.signature(spec.family.__init__).parameters if name in FAMILY_OPTIONS)
    declared = {item.package: set(item.options) for item in declarations()}
    assert declared == taken
