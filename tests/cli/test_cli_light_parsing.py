"""Parsing is light: ``prunesid --help``, every command's ``--help`` and argument errors answer
without importing transformers (the built-ins' names come from prunesid.family_kit.names, kept
equal to the registry by test_builtin_names.py), and the help names every built-in and the
default Hub model."""

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


HELP_PROBE = """
import sys
from prunesid.cli import main
for command in sys.argv[1:]:
    try:
        main([command, "--help"])
    except SystemExit:
        pass
sys.stderr.write("\\ntransformers imported: %s\\n" % ("transformers" in sys.modules))
"""


def test_every_commands_help_does_not_import_transformers():
    commands = ("chat", "compress", "calibrate")  # one process: each help exits, the probe goes on
    done = subprocess.run([sys.executable, "-c", HELP_PROBE, *commands], capture_output=True, text=True, timeout=300)
    for command in commands:
        assert f"usage: prunesid {command} " in done.stdout, done.stdout[-500:] + done.stderr[-500:]
    assert "".join(done.stdout.split()).count("built-in(tiny-random,tiny-random-next,") == 3  # wrapped lines joined
    assert "transformers imported: False" in done.stderr, done.stderr[-500:]


@pytest.mark.parametrize("command", ["chat", "compress", "calibrate"])
def test_a_commands_help_names_every_built_in_and_the_default_model(command, capsys):
    from prunesid.vlm import BUILTIN_MODELS, DEFAULT_MODEL

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    expected = f"built-in ({', '.join(BUILTIN_MODELS)}), Hugging Face id (e.g. {DEFAULT_MODEL}) or directory"
    assert "".join(expected.split()) in text
    assert "\x00" not in text
