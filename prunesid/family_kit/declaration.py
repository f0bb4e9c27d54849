"""What a family declares about itself, in its folder's ``__init__.py``, without importing torch.

Everything a front end or a plug-in registry needs to list (built-in names, vLLM
architectures, lmms-eval model ids) is read from these declarations; the code they name
(the adapter, the built-ins, the engine and evaluation classes) is imported only when used.
A family's folder is a package laid out by convention:

- ``adapter.py``: the transformers adapter; registers its model types (``register_family``)
- ``builtins.py``: its offline built-ins (``register_builtin``), when it has any
- ``vllm_model.py`` (or the modules ``vllm`` names): its vLLM classes
- ``lmms_eval_model.py``: its lmms-eval classes
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LmmsEvalModel:
    """One lmms-eval model id: its chat and/or simple class in the family's ``lmms_eval_model``."""

    model_id: str
    chat_class: str | None = None
    simple_class: str | None = None


@dataclass(frozen=True)
class FamilyDeclaration:
    package: str  # the folder's package: give __name__
    label: str = ""  # what a user calls it ("LLaVA-NeXT"): the words of refusals and help
    # the model options (prunesid.family_kit.options) its Family takes: the names of its __init__'s options
    options: tuple[str, ...] = ()
    order: int = 100  # where its built-ins and models appear in lists (the demo's picker, --help)
    builtins: tuple[str, ...] = ()  # its built-ins' names, as builtins.py registers them
    # model type -> "module:Class" of the vLLM class (module relative to the package)
    vllm: dict[str, str] = field(default_factory=dict)
    # engine arguments those classes need besides hf_overrides (docs/vllm.md)
    vllm_engine_arguments: dict = field(default_factory=dict)
    lmms_eval: tuple[LmmsEvalModel, ...] = ()

    @property
    def name(self) -> str:
        return self.package.rsplit(".", 1)[-1]

    @property
    def adapter_module(self) -> str:
        return f"{self.package}.adapter"

    @property
    def builtins_module(self) -> str | None:
        return f"{self.package}.builtins" if self.builtins else None

    def vllm_class_path(self, model_type: str) -> str:
        """``package.module:Class``, as vLLM's ``ModelRegistry.register_model`` takes it."""
        module, name = self.vllm[model_type].split(":")
        return f"{self.package}.{module}:{name}"

    def lmms_eval_class_path(self, name: str | None) -> str | None:
        return None if name is None else f"{self.package}.lmms_eval_model.{name}"
