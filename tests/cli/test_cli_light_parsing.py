"""Parsing is light: ``prunesid --help`` and argument errors answer without importing
transformers (the built-ins' names, which need it, are filled in only when a command's own
help is printed), and the help still names every built-in and the default Hub model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prunesid.cli import main

PROBE = """
import sys
from prunesid.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\ntransformers imported: %s\\n" % ("transformers" in sys.modules))
"""


def _run(*args: str) -> tuple[str, bool]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr, "transformers imported: True" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--help",), "methods (--method):"),
    (("chat",), "the following arguments are required: image, question"),
    (("compress", "picture.png", "--budget"), "argument --budget: expected one argument"),
    (("calibrate",), "the following arguments are required: images"),
])
def test_help_and_argument_errors_do_not_import_transformers(args, message):
    output, heavy = _run(*args)
    assert message in output, output[-500:]
    assert not heavy, f"prunesid {' '.join(args)} imported transformers"


@pytest.mark.parametrize("command", ["chat", "compress", "calibrate"])
def test_a_commands_help_names_every_built_in_and_the_default_model(command, capsys):
    from prunesid.vlm import BUILTIN_MODELS, DEFAULT_MODEL

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    expected = f"built-in ({', '.join(BUILTIN_MODELS)}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory"
    assert "".join(expected.split()) in text
    assert "\x00" not in text
