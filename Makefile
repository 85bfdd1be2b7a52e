# sporeprint — set-up, demo and tests. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-all test-slow test-ray lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	@# The CPU build of torch where no NVIDIA GPU is present; the default (CUDA) build otherwise.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing torch $(TORCH_VERSION) (CUDA build)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)"; \
	elif $(PY) -m pip download --no-index --no-deps -d /tmp/sporeprint-torch-probe "torch==$(TORCH_VERSION)" 2>/dev/null | grep -q '+cpu'; then \
		echo "no GPU: installing torch $(TORCH_VERSION) (local CPU build)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)"; \
	else \
		echo "no GPU: installing torch $(TORCH_VERSION) (CPU build from the PyTorch CPU index)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu \
			|| $(PY) -m pip install "torch==$(TORCH_VERSION)"; \
	fi
	$(PY) -m pip install -e ".[dev]"
	@# GPU FAISS only where a GPU is present: it replaces faiss-cpu (both ship `faiss`).
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing faiss-gpu in place of faiss-cpu"; \
		$(PY) -m pip install -e ".[dev,gpu]" && $(PY) -m pip uninstall -y faiss-cpu \
			&& $(PY) -m pip install --force-reinstall --no-deps faiss-gpu; \
	fi
	touch $@

install: $(VENV)/.installed  ## create the virtual environment and install everything

demo: install  ## run the end-to-end demo on simulated data (small scale); starts over in demo-run/
	rm -rf demo-run
	$(VENV)/bin/sporeprint demo --dir demo-run --scale small
	$(VENV)/bin/sporeprint report --store demo-run/fungi.duckdb --out demo-run/report.html \
		--truth demo-run/data/test_2024_truth.csv
	@echo "open demo-run/report.html in a browser; the look-alike page: $(VENV)/bin/sporeprint serve --store demo-run/fungi.duckdb"

test: install  ## the test suite without the tests marked slow (the README tour): about 5 minutes on 2 cores
	$(PY) -m pytest -q -m "not slow"

test-all: install  ## every test, the slow ones included
	$(PY) -m pytest -q

test-slow: install  ## only the tests marked slow (what test-all adds to test)
	$(PY) -m pytest -q -m slow

test-ray: install  ## install the Ray extra and run the Ray Data tests (a local Ray on 2 CPUs)
	$(PY) -m pip install -e ".[dev,ray]"
	$(PY) -m pytest -q -m ray tests/test_ray.py

lint: install
	$(VENV)/bin/ruff check .

bench: install  ## run every benchmark at a small size
	for b in benchmarks/bench_*.py; do $(PY) $$b --small || exit 1; done

clean:
	rm -rf $(VENV) demo-run .pytest_cache
