# Two commands on a fresh machine:  `make demo`  (set up + main job)  and  `make test`  (set up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# A CPU build of torch when none is present (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "torch==2.13.0" || $(BIN)/pip install torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -e ".[dev,mnist]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/hf-unlearn demo --output_dir outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hf_unlearn recipes tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/cgs_collection.py
	$(BIN)/python benchmarks/projection_overhead.py

clean:
	rm -rf $(VENV) outputs
