# darkcfg: `make demo` installs and runs the main job, `make test` installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
# The torch to install first when the environment has none (a bare `torch` requirement would pull a
# multi-GB CUDA build). Override e.g. with `make install TORCH_SPEC='torch --index-url ...'`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/darkcfg demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) scripts/bench.py
	$(PY) scripts/bench_detect.py

lint: $(STAMP)
	$(VENV)/bin/ruff check darkcfg tests scripts

clean:
	rm -rf $(VENV) build *.egg-info
