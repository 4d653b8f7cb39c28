#!/usr/bin/env bash
# ANF token-unit pilot (docs/regimes.md, Goal 1). Usage: scripts/regime_anf_pilot.sh NAME METHOD_YAML INIT_LIM NOISE_LR [extra args]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 method=$2 lim=$3 lr=$4; shift 4
exec .venv/bin/robust-vit fit \
  --config experiments/base.yaml --config experiments/data/fashion_mnist.yaml \
  --config experiments/model/vit_cpu.yaml --config "$method" --config experiments/finetune.yaml \
  --model.weights artifacts/vit_cpu_fashion_mnist.safetensors \
  --model.optimizer.init_args.lr 3e-5 \
  --trainer.max_steps 200 --trainer.max_epochs -1 \
  --model.method.init_args.rounds 5 --model.method.init_args.steps_per_round 40 \
  --model.method.init_args.noise_units token_rms \
  --model.method.init_args.init_lim "$lim" --model.method.init_args.noise_lr "$lr" \
  --test_after_fit false --name "regime_$name" --threads 2 "$@"
