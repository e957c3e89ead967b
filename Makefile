# The front door. Every target installs what it needs on first use (`make setup` does only that).
#   make finetune RECIPE=legal [OVERRIDES="train.max_steps=5"] [RESUME=1] [VERBOSE=1]   (VERBOSE: library warnings too)
#   make finetune RECIPE=moonlight-legal GPUS=4 [NODES=2 HOSTFILE=hostfile]   (DeepSpeed launcher; no GPUS: one process)
#   make estimate RECIPE=deepseek-v3-legal GPUS=8 NODES=4 [GPU_MEMORY=80] [HOST_MEMORY=1024]   (memory per GPU and host, no weights)
#   make validate RECIPE=legal
#   make eval TARGET=deepseek-v3-tiny SUITE=standard [LIMIT=8] [SOURCE=hub]   (TARGET: run id, model dir, hub id, preset)
#   make dashboard [PORT=8501]  |  make mlflow [MLFLOW_PORT=5000]
#   make bench [BENCH_ARGS="--steps 40 --repeats 5"] [GRPO_BENCH_ARGS="--steps 12 --repeats 3"]
#   make schedule SUITE=legal [INTERVAL=600 | CRON="*/30 * * * *" | ONCE=1] [LIMIT=8]   (evaluate finished runs lacking SUITE)
#   make test  |  make test-fast   (the whole suite, as CI runs it  |  unit tests only)
#   make gpu-wheels PYTHON_VERSION=3.12   (where PyPI is reachable: the wheels a GPU node installs, into wheels/py3.12/)
#   make gpu-proof [GPU_PYTHON=python3] [DRY=1 [ZERO=1]]   (on the GPU node, from those wheels, no network; DRY=1: CPU dry run)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= legal
OVERRIDES ?=
RESUME ?=
VERBOSE ?=
TARGET ?= deepseek-v3-tiny
SUITE ?= standard
LIMIT ?=
SOURCE ?= local
PORT ?= 8501
MLFLOW_PORT ?= 5000
BACKEND ?= $(if $(MLFLOW_TRACKING_URI),$(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)
BENCH_ARGS ?=
GPUS ?=
NODES ?= 1
HOSTFILE ?=
GPU_MEMORY ?= 80
HOST_MEMORY ?= 1024
# The GPU proof (benchmarks/gpu_proof.py): the node's Python with its CUDA torch, the carried wheels, the report folder.
# DRY=1 runs it here on the CPU: this machine's Python, the groups a clean environment needs, its own folder.
DRY ?=
ZERO ?=
comma := ,
GPU_PYTHON ?= $(if $(DRY),$(PYTHON),python3)
PYTHON_VERSION ?= $(shell $(GPU_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
GPU_WHEELS ?= wheels/py$(PYTHON_VERSION)
GPU_WHEEL_GROUPS ?= stack$(comma)columnar$(comma)$(if $(DRY),node,bitsandbytes)
GPU_PROOF ?= gpu-proof$(if $(DRY),-dry)
# Every rank of one job writes to the same run folder, so the launcher names it once.
RUN_NAME := $(shell date +%Y%m%d-%H%M%S)
MULTI_NODE := $(filter-out 1,$(NODES))
LAUNCH = $(if $(GPUS),$(VENV)/bin/deepspeed --no_local_rank --num_gpus $(GPUS) $(if $(MULTI_NODE),--num_nodes $(NODES) --hostfile $(HOSTFILE)) $(VENV)/bin/workbench,$(VENV)/bin/workbench)
# local evals never touch the hub
EVAL_OFFLINE := $(if $(filter hub,$(SOURCE)),0,1)

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/workbench/torch_extensions

.PHONY: setup finetune validate estimate eval dashboard mlflow bench schedule test test-fast clean gpu-wheels gpu-proof

setup: $(STAMP)

# Reinstalls only when the dependency list or the pins change; the second call is instant.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $(STAMP)

finetune: $(STAMP)
	$(if $(and $(MULTI_NODE),$(if $(HOSTFILE),,missing)),$(error NODES=$(NODES) needs HOSTFILE=<file listing "host slots=N" per node>))
	$(LAUNCH) finetune $(RECIPE) $(OVERRIDES) $(if $(RESUME),--resume,$(if $(GPUS),track.run_name=$(RUN_NAME))) $(if $(VERBOSE),-v)

estimate: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE-1} $(VENV)/bin/workbench estimate $(RECIPE) $(OVERRIDES) --gpus $(or $(GPUS),1) --nodes $(NODES) --gpu-memory $(GPU_MEMORY) --host-memory $(HOST_MEMORY)

validate: $(STAMP)
	$(VENV)/bin/workbench validate $(RECIPE) $(OVERRIDES)

eval: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE-$(EVAL_OFFLINE)} HF_DATASETS_OFFLINE=$${HF_DATASETS_OFFLINE-$(EVAL_OFFLINE)} \
	$(VENV)/bin/workbench eval $(TARGET) --suite $(SUITE) --source $(SOURCE) $(if $(LIMIT),--limit $(LIMIT))

# Read-only Streamlit dashboard over the same store as training (never writes to MLflow).
dashboard: $(STAMP)
	MLFLOW_TRACKING_URI=$(BACKEND) MLFLOW_UI_URL=$${MLFLOW_UI_URL-http://127.0.0.1:$(MLFLOW_PORT)} \
	$(PY) -m streamlit run ui/app.py --server.address 127.0.0.1 --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

# The MLflow UI: one worker and no job runner (starts in seconds, ~0.5 GB); security middleware stays on.
mlflow: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --backend-store-uri $(BACKEND) \
	  --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/bench.py $(BENCH_ARGS)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/grpo_bench.py $(GRPO_BENCH_ARGS)

# Local data only, so offline; ONCE=1 for one tick (cron, Kubernetes), else every INTERVAL s or on CRON.
schedule: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE-1} HF_DATASETS_OFFLINE=$${HF_DATASETS_OFFLINE-1} \
	$(VENV)/bin/workbench schedule --suite $(SUITE) $(if $(ONCE),--once,$(if $(CRON),--cron "$(CRON)",--every $(or $(INTERVAL),600))) $(if $(LIMIT),--limit $(LIMIT))

# Two workers (pytest-xdist, one torch thread each; a file stays on one worker), then what times itself alone.
test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q --durations=15 -n 2 --dist loadfile -m "not serial" tests
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q --durations=5 -m serial tests

# The edit loop: unit tests only (a few minutes).
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile -m "not serial" tests/unit

# Downloads gpu_wheels.txt's sections for PYTHON_VERSION (manylinux x86_64) into $(GPU_WHEELS)/<section>/.
gpu-wheels: $(STAMP)
	$(PY) benchmarks/gpu_proof.py wheels --python-version $(PYTHON_VERSION) --out $(GPU_WHEELS) --groups $(GPU_WHEEL_GROUPS)

# On the GPU node nothing comes from the network (no $(STAMP): `pip install --no-index` from $(GPU_WHEELS) only);
# DRY=1 first downloads this machine's wheels, then does the same from them.
gpu-proof: $(if $(DRY),gpu-wheels)
	$(GPU_PYTHON) benchmarks/gpu_proof.py setup --wheels $(GPU_WHEELS) --venv $(GPU_PROOF)/venv $(if $(DRY),--dry)
	$(GPU_PROOF)/venv/bin/python benchmarks/gpu_proof.py run --venv $(GPU_PROOF)/venv --out $(GPU_PROOF) $(if $(DRY),--dry) $(if $(ZERO),--zero)

clean:
	rm -rf runs .cache mlflow.db
