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
	@echo
	@echo "darkcfg is installed in $(VENV): run 'source $(VENV)/bin/activate' to use darkcfg and python scripts/... in"
	@echo "this shell (or call $(VENV)/bin/darkcfg and $(VENV)/bin/python directly)."

test: $(STAMP)
	$(PY) -m pytest -q

# the README's speed figures, each runtime in three rounds of new processes; yolov4-p5 at batch 8 with all nine
# runtimes resident does not fit in 24 GiB
MODES = fast compiled openvino openvino-default openvino-int8 ort ov-fp32 ov-default
bench: $(STAMP)
	$(PY) scripts/bench.py --isolate --rounds 3 --repeats 3 --batch-repeats 2 --models yolov4-tiny yolov4-csp \
		--modes $(MODES)
	$(PY) scripts/bench.py --isolate --rounds 3 --repeats 2 --batches 1 --models yolov4-p5 --modes $(MODES)
	$(PY) scripts/bench.py --isolate --rounds 3 --repeats 2 --batch-repeats 1 --models yolov4-p5 --modes fast openvino \
		openvino-default ov-fp32 ov-default
	$(PY) scripts/bench_detect.py

lint: $(STAMP)
	$(VENV)/bin/ruff check darkcfg tests scripts

clean:
	rm -rf $(VENV) build *.egg-info
