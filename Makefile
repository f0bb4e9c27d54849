# One set-up path for a fresh machine: `make test` and `make demo` create the venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/pip --disable-pip-version-check -q

.PHONY: setup test demo bench browser clean

setup: $(VENV)/.installed

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH)
	$(PIP) install -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	touch $@

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/python app.py

bench: setup
	$(BIN)/python benchmarks/compressor.py
	$(BIN)/python benchmarks/prefill.py
	$(BIN)/python benchmarks/rerender.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-artifacts
