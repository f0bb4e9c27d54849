"""The built-in models' names and the default Hub model, importable without torch or transformers.

``prunesid chat --help`` lists them; reading them from ``prunesid.vlm`` (the registry itself)
would import transformers and cost seconds on every help. The names come from the families'
declarations (:func:`prunesid.family_kit.declarations`), which import nothing heavy;
tests/cli/test_builtin_names.py checks them against what the built-in modules register.
"""

from prunesid.family_kit import declarations

# In list order, as prunesid.vlm.BUILTIN_MODELS lists them.
BUILTIN_NAMES = tuple(name for declared in declarations() for name in declared.builtins)

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"  # prunesid.vlm.loading.DEFAULT_MODEL
