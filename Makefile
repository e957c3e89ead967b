# The front door. Every target installs what it needs on first use (`make setup` does only that).
#   make finetune RECIPE=legal [OVERRIDES="train.max_steps=5"] [RESUME=1]
#   make validate RECIPE=legal
#   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= legal
OVERRIDES ?=
RESUME ?=

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/workbench/torch_extensions

.PHONY: setup finetune validate test clean

setup: $(STAMP)

# Reinstalls only when the dependency list or the pins change; the second call is instant.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $(STAMP)

finetune: $(STAMP)
	$(VENV)/bin/workbench finetune $(RECIPE) $(OVERRIDES) $(if $(RESUME),--resume)

validate: $(STAMP)
	$(VENV)/bin/workbench validate $(RECIPE) $(OVERRIDES)

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q tests

clean:
	rm -rf runs .cache mlflow.db
