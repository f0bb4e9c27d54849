"""The layers of a family folder, read from the imports of every module of prunesid/families.

A family folder holds two kinds of module: the family itself (declaration, adapter, layout,
built-ins, model code and checkpoint reader), which sits below the press path, and its front
ends' classes (``vllm_model*`` and ``lmms_eval_model``), leaves that vLLM and lmms-eval load
by name and that may use everything. Catches an adapter or a built-in importing the press
path, the facade or a plug-in surface (a circle waiting to happen), and a library module
importing a front end's class by module instead of through the declarations.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ROOT / "prunesid" / "families"
ABOVE = ("prunesid.pipeline", "prunesid.vlm", "prunesid.eval", "prunesid.vllm", "prunesid.cli", "demo", "viz")


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


def test_no_library_module_imports_a_front_end_class_of_a_family():
    front_end_classes = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in FAMILIES.rglob("*.py")
        if is_front_end_class(path) and path.name != "__init__.py"
    }
    assert "prunesid.families.llava.vllm_model" in front_end_classes  # the rule has something to check
    importers = {
        str(path.relative_to(ROOT)): sorted(imported(path) & front_end_classes)
        for path in (ROOT / "prunesid").rglob("*.py")
        if not is_front_end_class(path)
    }
    assert not {path: names for path, names in importers.items() if names}


def test_each_declaration_names_the_model_options_its_families_take():
    """A family's declared options (the words of refusals and help) are exactly the model
    options its adapters' ``__init__`` take. Catches an option added to an adapter but not
    declared (refused with "no family" words) or declared but not taken."""
    import inspect

    from prunesid.families import declarations, load_families
    from prunesid.family_options import FAMILY_OPTIONS

    taken: dict[str, set] = {}
    for spec in load_families().values():
        package = spec.family.__module__.rsplit(".", 1)[0]
        taken.setdefault(package, set()).update(name for name in inspect.signature(spec.family.__init__).parameters if name in FAMILY_OPTIONS)
    declared = {item.package: set(item.options) for item in declarations()}
    assert declared == taken
