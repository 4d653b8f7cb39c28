# robust-vit: `make help` lists the targets. Every target that needs the venv creates it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/robust-vit
THREADS ?= 2
FMNIST_URL ?= http://fashion-mnist.s3-website.eu-central-1.amazonaws.com
FMNIST_LOCAL := data/fashion-mnist
WEIGHTS := artifacts/vit_cpu_fashion_mnist.safetensors
CPU_RUN := --config experiments/base.yaml --config experiments/data/fashion_mnist.yaml \
	--config experiments/model/vit_cpu.yaml
export WANDB_MODE ?= offline
export OMP_NUM_THREADS ?= $(THREADS)

.DEFAULT_GOAL := help
# Sweeps: one run per METHOD x SEED, each in runs/$(SWEEP)/<method>/seed<s>/, finetuned from FROM
# and tested with EVAL. A run that finished has a .done marker and is skipped on restart.
METHODS ?= erm anf anf_random
SEEDS ?= 0 1 2
SWEEP ?= sweep
FROM ?= $(WEIGHTS)
EVAL ?= experiments/eval/fashion_mnist.yaml
SWEEP_ARGS ?=
# Overlays for some arms only (METHOD_ARGS, for the arms matching the patterns METHOD_ARGS_FOR),
# and a test-only arm (TEST_ONLY: it trains nothing and tests TEST_WEIGHTS with TEST_METHOD's
# config and the same suite).
METHOD_ARGS ?=
METHOD_ARGS_FOR ?=
# Composed arms (COMPOSED, e.g. pgd_at_anf) get COMPOSED_ARGS; every other arm gets ARM_ARGS.
COMPOSED ?=
COMPOSED_ARGS ?=
ARM_ARGS ?=
TEST_ONLY ?= none
TEST_WEIGHTS ?= $(WEIGHTS)
TEST_METHOD ?= erm
SWEEP_RUNS := $(foreach m,$(METHODS),$(foreach s,$(SEEDS),runs/$(SWEEP)/$(m)/seed$(s)/.done))
STAGE1_LAST := artifacts/safer_stage1_last.safetensors
STAGE1_BEST := artifacts/safer_stage1_best.safetensors

.PHONY: help install data demo pretrain finetune sweep sweep-anf sweep-safer nullspace report bench perf gpu-check prefetch test test-full lint clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade --quiet pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed data ## create the venv, install the pinned packages and the data

data: ## get Fashion-MNIST (Debian package when root, else a download when online)
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || [ -f $(FMNIST_LOCAL)/t10k-labels-idx1-ubyte.gz ]; then \
		echo "Fashion-MNIST: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; \
	else \
		mkdir -p $(FMNIST_LOCAL) && for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
			t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
			curl -fsSL -o $(FMNIST_LOCAL)/$$f.gz $(FMNIST_URL)/$$f.gz || { \
			echo "Cannot get Fashion-MNIST: run 'sudo apt-get install dataset-fashion-mnist'," \
			     "or put the four idx .gz files in $(FMNIST_LOCAL)/"; exit 1; }; done; \
	fi

$(WEIGHTS): | $(VENV)/.installed
	$(CLI) fit $(CPU_RUN) --config experiments/method/erm.yaml --config experiments/pretrain.yaml \
		--threads $(THREADS) --test_after_fit true

pretrain: install ## train the CPU default ViT from scratch and export it as safetensors
	rm -f $(WEIGHTS) && $(MAKE) --no-print-directory $(WEIGHTS)

finetune: install $(WEIGHTS) ## finetune the pretrained CPU ViT (METHOD=erm), test it with the CPU robustness suite
	$(CLI) fit $(CPU_RUN) --config experiments/method/$(or $(METHOD),erm).yaml \
		--config experiments/finetune.yaml --config experiments/eval/cpu.yaml \
		--model.weights $(WEIGHTS) --threads $(THREADS) $(FINETUNE_ARGS)

demo: install ## pretrain, finetune from the weights file, evaluate, print the table (CPU, minutes)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory $(WEIGHTS) finetune FINETUNE_ARGS="--trainer.max_epochs 1" && \
	$(CLI) report runs/pretrain runs/finetune --latest --keys test/acc --plots runs/plots && \
	echo "demo: $$(( $$(date +%s) - start )) s"

sweep: $(SWEEP_RUNS) ## METHODS x SEEDS finetuning runs from FROM, each tested with EVAL (make -n sweep: the plan)
	$(CLI) report runs/$(SWEEP) --group $(if $(BASELINE),--baseline $(BASELINE))

runs/$(SWEEP)/%/.done: | $(VENV)/.installed
	$(CLI) fit $(CPU_RUN) \
		$(if $(filter safer_%,$(word 1,$(subst /, ,$*))),--config experiments/method/safer.yaml) \
		--config experiments/method/$(word 1,$(subst /, ,$*)).yaml --config experiments/finetune.yaml \
		--config $(EVAL) --model.weights $(FROM) --name $(SWEEP)/$* \
		--seed_everything $(patsubst seed%,%,$(word 2,$(subst /, ,$*))) --threads $(THREADS) \
		--trainer.enable_progress_bar false $(SWEEP_ARGS) \
		$(if $(filter $(METHOD_ARGS_FOR),$(word 1,$(subst /, ,$*))),$(METHOD_ARGS)) \
		$(if $(filter $(COMPOSED),$(word 1,$(subst /, ,$*))),$(COMPOSED_ARGS),$(ARM_ARGS))
	touch $@

runs/$(SWEEP)/$(TEST_ONLY)/%/.done: | $(VENV)/.installed
	$(CLI) test $(CPU_RUN) --config experiments/method/$(TEST_METHOD).yaml --config $(EVAL) \
		--model.weights $(TEST_WEIGHTS) --name $(SWEEP)/$(TEST_ONLY)/$* \
		--seed_everything $(patsubst seed%,%,$*) --threads $(THREADS) \
		--trainer.enable_progress_bar false $(SWEEP_ARGS)
	touch $@

sweep-anf: install $(WEIGHTS) ## the pretrained ViT vs ERM, ANF, random and Gaussian noise finetuning, 3 seeds, 800 gentle steps each
	$(MAKE) --no-print-directory sweep SWEEP=anf \
		METHODS="pretrained erm anf anf_random gaussian_noise" TEST_ONLY=pretrained \
		SWEEP_ARGS="--config experiments/regime/anf_finetune.yaml" \
		METHOD_ARGS_FOR="anf anf_random" \
		METHOD_ARGS="--config experiments/regime/anf_token_units.yaml"

nullspace: install $(WEIGHTS) ## nullspace analysis of a weights file (ANALYSE=<file>; default: the pretrained CPU ViT)
	$(CLI) validate $(CPU_RUN) --config experiments/analysis/nullspace.yaml \
		--model.weights $(or $(ANALYSE),$(WEIGHTS)) --name nullspace --threads $(THREADS)

# SAFER in the robust-overfitting regime (docs/regimes.md): stage 1 is PGD-AT from scratch on 500
# images (experiments/regime/safer_stage1.yaml), exported twice: its last (overfit) weights, which
# every stage-2 arm continues from, and its best validation robust accuracy (early stopping).
$(STAGE1_LAST) $(STAGE1_BEST) &: | $(VENV)/.installed
	rm -f $(STAGE1_LAST) $(STAGE1_BEST)
	$(CLI) fit $(CPU_RUN) --config experiments/method/pgd_at.yaml \
		--config experiments/regime/safer_stage1.yaml --name safer_stage1 --threads $(THREADS) \
		--trainer.callbacks+=callbacks.ExportWeights --trainer.callbacks.path $(STAGE1_LAST) \
		--trainer.callbacks+=callbacks.ExportWeights --trainer.callbacks.path $(STAGE1_BEST) \
		--trainer.callbacks.select best --trainer.callbacks.monitor val/robust_acc
# Every stage-2 arm takes the stage-2 attack (regime/safer_stage2_attack.yaml) except the composed
# one (PGD-AT + ANF noise), whose own regime file restates its terms with that attack.
sweep-safer: install $(STAGE1_LAST) $(STAGE1_BEST) ## overfit PGD-AT stage 1, then SAFER (and SAFER-LoRA, PGD-AT + ANF noise) vs continued PGD-AT, early stopping and two ablations, 3 seeds, 24 epochs each
	$(MAKE) --no-print-directory sweep SWEEP=safer FROM=$(STAGE1_LAST) \
		METHODS="pgd_at safer safer_sam_all safer_base_optimizer safer_lora pgd_at_anf early_stopped" \
		TEST_ONLY=early_stopped TEST_WEIGHTS=$(STAGE1_BEST) TEST_METHOD=pgd_at \
		EVAL=experiments/eval/fashion_mnist_at.yaml \
		SWEEP_ARGS="--config experiments/regime/safer_stage2.yaml" \
		METHOD_ARGS_FOR="safer safer_%" \
		METHOD_ARGS="--config experiments/regime/safer_selection.yaml" \
		ARM_ARGS="--config experiments/regime/safer_stage2_attack.yaml" \
		COMPOSED=pgd_at_anf COMPOSED_ARGS="--config experiments/regime/pgd_at_anf_stage2.yaml"

report: install ## docs/results.md (and its plots in docs/results/) from the sweeps' records
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/results_page.py --runs runs --out docs/results.md

# make bench runs two jobs at a time with one thread each (on 2 cores that finishes sooner than one
# 2-thread job at a time), and writes its wall time, pretraining included, to runs/bench_seconds.
BENCH_JOBS ?= 2
BENCH_THREADS ?= 1
bench: install ## the CPU reproduction end to end (pretrain, sweep-anf, sweep-safer), then docs/results.md
	@mkdir -p runs && start=$$(date +%s); \
	$(MAKE) --no-print-directory -j$(BENCH_JOBS) -Otarget THREADS=$(BENCH_THREADS) \
		OMP_NUM_THREADS=$(BENCH_THREADS) $(WEIGHTS) sweep-anf sweep-safer && \
	echo $$(( $$(date +%s) - start )) > runs/bench_seconds && \
	echo "bench: $$(cat runs/bench_seconds) s" && $(MAKE) --no-print-directory report

perf: install $(WEIGHTS) ## every CPU performance benchmark in turn, written to docs/performance.md
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/performance.py --threads $(THREADS) --out docs/performance.md

# One GPU, at most 8 minutes: GPU_CHECK_ARGS=--tiny runs every code path on the CPU in seconds;
# GPU_CHECK_ARGS="--out docs/performance_gpu.md" writes the page `make perf` folds in.
GPU_CHECK_ARGS ?=
gpu-check: | $(VENV)/.installed ## step images/s, MFU and memory of ERM, PGD-AT, ANF, SAFER; PGD-20 vs torchattacks; bf16 attacks (runs/gpu_check.md)
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

prefetch: $(VENV)/.installed ## fill the Hugging Face cache with MODEL's pretrained weights (online machines only), for offline compute nodes
	@[ -n "$(MODEL)" ] || { echo "make prefetch MODEL=<timm name[.tag] or hf-hub:org/name>"; exit 2; }
	$(CLI) prefetch $(MODEL)

test: install ## run the test suite (what CI runs)
	$(PY) -m pytest -q

test-full: install ## the test suite including slow tests
	$(PY) -m pytest -q -m ''

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean: ## remove runs, artifacts and caches (keeps the venv)
	rm -rf runs artifacts .pytest_cache .mypy_cache .ruff_cache
