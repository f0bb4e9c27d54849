"""The model ids lmms-eval finds through the ``lmms_eval.models`` entry-point group.

pyproject.toml points one entry point at :func:`manifests`; lmms-eval (>= 0.6) calls it when
``lmms_eval.models`` is imported and registers every manifest it returns: one per
``LmmsEvalModel`` the families declare (plug-in families included). Only lmms-eval's
registry is imported here; a model's classes are imported when a run asks for it.
"""

from __future__ import annotations

from prunesid.family_kit import declarations


def manifests() -> list:
    # imported here: importing lmms_eval.models loads the entry points, this module among them
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(
            model_id=model.model_id,
            chat_class_path=declared.lmms_eval_class_path(model.chat_class),
            simple_class_path=declared.lmms_eval_class_path(model.simple_class),
        )
        for declared in declarations()
        for model in declared.lmms_eval
    ]
