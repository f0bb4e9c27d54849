"""What every family folder is built from: the adapter base and layouts, the declarations,
processors, towers, the built-in registry, and the discovery of the folders themselves."""

from prunesid.family_kit.discovery import (
    FAMILIES_PACKAGE, FamilyDeclaration, LmmsEvalModel, builtin_directory, builtin_models, declarations,
    load_families, refuse_foreign, takers,
)

__all__ = [
    "FAMILIES_PACKAGE", "FamilyDeclaration", "LmmsEvalModel", "builtin_directory", "builtin_models", "declarations",
    "load_families", "refuse_foreign", "takers",
]
