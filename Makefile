# One set-up path for a fresh machine: `make test` and `make demo` create the venv themselves.
#
# Versions: requirements*.txt keep ranges (what the code supports); requirements.lock holds
# the exact versions the test suite last passed with, and every install here is constrained
# by it. `make lock` rewrites it from the venv after a green `make test`.
#
# torch is installed first, pinned. Which build that pin gives depends on the index pip
# reads: this project's machines resolve it to the CPU wheel, while plain PyPI on Linux x86_64
# gives the CUDA build (several GB). For a CPU-only install anywhere:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
LOCK        ?= requirements.lock
PIP         := $(BIN)/pip --disable-pip-version-check -q

.PHONY: setup test test-fast demo bench lock clean setup-vllm test-vllm mutation mutation-vllm

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -r requirements-dev.txt -c $(LOCK)
	# lmms-eval (the evaluation tests) without its declared dependencies: they include
	# torchvision, whose only wheel here is a CUDA build that breaks beside the CPU torch;
	# what it really needs is in requirements-dev.txt.
	$(PIP) install --no-deps "lmms-eval==0.7.3" -c $(LOCK)
	$(PIP) install --no-deps -e .
	touch $@

# HF_HUB_OFFLINE: the tests never reach the network (the apps they launch serve tiny-random).
# Two workers (pytest-xdist): the launched apps, lmms-eval runs and Chromium wait on I/O and
# start-up much of the time, so two processes fill two cores better than one.
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2

# The quick tier while working: no browser, no lmms-eval, no launched app or fresh process.
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not browser and not eval and not slow" -q -n 2

# The vLLM plug-in's tests (tests_vllm) in their own venv: vLLM's CPU build, installed from
# requirements-vllm.lock without dependency resolution so that no CUDA wheel comes in (see
# requirements-vllm.txt). The main suite never collects tests_vllm.
VLLM_VENV   ?= .venv-vllm
VLLM_BIN    := $(VLLM_VENV)/bin
VLLM_LOCK   ?= requirements-vllm.lock

setup-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: requirements-vllm.txt $(VLLM_LOCK) pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip --disable-pip-version-check -q install --no-deps -r $(VLLM_LOCK)
	$(VLLM_BIN)/pip --disable-pip-version-check -q install --no-deps -e .
	touch $@

test-vllm: setup-vllm
	HF_HUB_OFFLINE=1 $(VLLM_BIN)/python -m pytest tests_vllm -p no:cacheprovider -o addopts=-ra -q

# Mutation testing, on demand (not in CI; hours for the whole scope on two cores): mutmut
# mutates the modules listed in pyproject.toml [tool.mutmut] in a copy under mutants/ and runs,
# per mutant, the tests that reach the mutated function. MUTANTS narrows the run by mutant
# name, e.g. make mutation MUTANTS='prunesid.selection.dynamic*'; MUTATION_SAMPLE=40 runs a
# random sample of 40 mutants per module (the same one each time: tests/mutation_sample.py).
# The scores and the survivors judged equivalent are in docs/testing.md; `mutmut browse` or
# `mutmut show NAME` inspects a survivor. mutation-vllm does the same for the vLLM plug-in's
# modules in vLLM's environment, in build/mutation-vllm ([tool.mutmut_vllm]);
# VLLM_ENGINE_TESTS=0 leaves the engine tests out (a first pass in minutes; then a run with
# them for the mutants reported as having no tests: each starts an engine).
MUTANTS     ?=
MUTATION_CHILDREN ?= 2
MUTATION_SAMPLE ?=
# The mutants' names: MUTANTS, or the sample (a failed or empty sample stops the run rather
# than leave mutmut to run every mutant).
mutation_names = names="$(MUTANTS)"; if [ -n "$(MUTATION_SAMPLE)" ]; then \
	names=$$($(1) tests/mutation_sample.py $(MUTATION_SAMPLE) $(MUTANTS)) || exit 1; fi
mutation: setup
	$(call mutation_names,$(abspath $(BIN))/python); \
	PATH=$(abspath $(BIN)):$$PATH HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 mutmut run --max-children $(MUTATION_CHILDREN) $$names
	$(BIN)/mutmut results

mutation-vllm: setup-vllm
	$(VLLM_BIN)/pip install "mutmut==3.8.1"
	$(VLLM_BIN)/python tests_vllm/mutation_tree.py build/mutation-vllm $(if $(filter 0,$(VLLM_ENGINE_TESTS)),--without-engine)
	cd build/mutation-vllm && $(call mutation_names,$(abspath $(VLLM_BIN))/python); \
		PATH=$(abspath $(VLLM_BIN)):$$PATH HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 mutmut run --max-children $(MUTATION_CHILDREN) $$names
	cd build/mutation-vllm && $(abspath $(VLLM_BIN))/mutmut results

demo: setup
	$(BIN)/python app.py

bench: setup
	$(BIN)/python benchmarks/compressor.py
	$(BIN)/python benchmarks/prefill.py
	$(BIN)/python benchmarks/rerender.py
	$(BIN)/python benchmarks/images.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/methods.py
	$(BIN)/python benchmarks/prefill_qwen.py
	$(BIN)/python benchmarks/prefill_video.py

# The exact versions of this venv, less the project itself, as name==version (never a
# local file URL); torch without its local build tag (+cpu), so that the same lock serves
# CPU and CUDA installs.
lock:
	test -x $(BIN)/pip || { echo "no venv yet: run make setup first" >&2; exit 1; }
	{ echo "# Exact versions the test suite passed with (make lock). Used as constraints by make and the Dockerfile."; \
	  $(BIN)/pip list --format=freeze --exclude-editable --disable-pip-version-check \
	  | grep -v -i -E '^(prunesid|pip|setuptools|wheel)==' | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-artifacts mutants build/mutation-vllm
