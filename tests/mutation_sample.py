"""A random sample of mutmut's mutants, a few per module, for `make mutation-sample`.

The whole mutation scope is thousands of mutants, hours to days on two cores; a uniform
sample per module gives each module's score with a known margin in a fraction of the time.
Prints the sampled names, one per line, for `mutmut run`. Reads the mutants mutmut wrote
(mutants/**/*.meta) and writes them first, as `mutmut run` does, where there are none.

    python tests/mutation_sample.py PER_MODULE [PATTERN ...]   # PATTERN: fnmatch on names
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import random
import sys
from pathlib import Path

SEED = 0  # the same sample on every run: reruns continue it, and a score can be reproduced


def write_mutants() -> None:
    """mutmut's own first step of `run`: copy the tree under mutants/, write every mutant and its .meta."""
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    create_mutants(2)


def mutants_by_module() -> dict[str, list[str]]:
    found = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        if names:
            found[names[0].split(".x_")[0].split(".xǁ")[0]] = names
    return found


def main(argv: list[str]) -> None:
    per_module, patterns = int(argv[0]), argv[1:] or ["*"]
    if not list(Path("mutants").rglob("*.py.meta")):
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the list
            write_mutants()
    sample = []
    for module, names in mutants_by_module().items():
        if any(fnmatch.fnmatch(module, pattern) for pattern in patterns):
            chosen = random.Random(f"{SEED}:{module}")  # a module's sample does not depend on the others
            sample += sorted(chosen.sample(names, min(per_module, len(names))))
    if not sample:  # an empty list would make `mutmut run` run every mutant
        raise SystemExit(f"no mutants of a module matching {' '.join(patterns)}")
    print("\n".join(sample))


if __name__ == "__main__":
    main(sys.argv[1:])
