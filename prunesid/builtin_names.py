"""The built-in models' names and the default Hub model, importable without torch or transformers.

``prunesid chat --help`` lists them; reading them from ``prunesid.vlm`` (the registry itself)
would import transformers and cost seconds on every help. The registry stays the authority:
tests/cli/test_builtin_names.py fails, naming the difference, when this list and
``prunesid.vlm.BUILTIN_MODELS`` / ``DEFAULT_MODEL`` part (a built-in registered, renamed or
removed without updating it here).
"""

# In registration order, as prunesid.vlm.BUILTIN_MODELS lists them.
BUILTIN_NAMES = (
    "tiny-random",
    "tiny-random-next",
    "tiny-random-qwen2-vl",
    "tiny-random-qwen2.5-vl",
    "tiny-random-qwen3-vl",
    "tiny-random-qwen3-vl-moe",
    "tiny-random-qwen3.5",
    "tiny-random-qwen3.5-moe",
    "tiny-random-video-llava",
    "tiny-random-mgm",
    "tiny-random-mgm-hd",
    "tiny-random-llava-onevision",
    "tiny-random-internvl",
)

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"  # prunesid.vlm.loading.DEFAULT_MODEL
