"""The copy of the tree in which `make mutation-vllm` runs mutmut (in .venv-vllm).

mutmut reads its settings from the [tool.mutmut] table of ./pyproject.toml; the vLLM
plug-in's modules need their own (their tests run in vLLM's environment), kept in
[tool.mutmut_vllm]. This copies the project's files (git's tracked and untracked, not
ignored) to DEST where they differ, and writes DEST/pyproject.toml with that table as
[tool.mutmut]. Files that did not change keep their times, so mutmut's results in
DEST/mutants carry over between runs.

    python tests_vllm/mutation_tree.py DEST [--without-engine]

--without-engine leaves the engine tests (tests_vllm/test_engine*.py) out of the selection:
a first pass over every mutant in minutes, after which a run with them (each mutant starts
an engine, minutes each) is needed only for the mutants that pass reported as having no tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def vllm_settings(pyproject: str, engine: bool = True) -> str:
    if "[tool.mutmut_vllm]" not in pyproject:
        raise SystemExit("pyproject.toml has no [tool.mutmut_vllm] table")
    settings = pyproject.replace("[tool.mutmut]", "[tool.mutmut_main]").replace("[tool.mutmut_vllm]", "[tool.mutmut]")
    if not engine:
        head, table = settings.split("[tool.mutmut]", 1)
        table, left_out = re.subn(r'"tests_vllm/test_engine[^"]*",?[ \t]*', "", table)
        if not left_out:
            raise SystemExit("[tool.mutmut_vllm] names no engine test to leave out")
        settings = head + "[tool.mutmut]" + table  # (the emptied lines stay: TOML takes them)
    return settings


def main(destination: str, engine: bool = True) -> None:
    dest = Path(destination).resolve()
    for name in project_files():
        source, target = ROOT / name, dest / name
        if name == "pyproject.toml":
            continue
        if not target.exists() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    settings = vllm_settings((ROOT / "pyproject.toml").read_text(), engine)
    if not (dest / "pyproject.toml").exists() or (dest / "pyproject.toml").read_text() != settings:
        (dest / "pyproject.toml").write_text(settings)


if __name__ == "__main__":
    main(sys.argv[1], engine="--without-engine" not in sys.argv[2:])
