#!/usr/bin/env bash
# SAFER stage-1 robust-overfitting pilot (docs/regimes.md, Goal 2): PGD-AT from scratch with
# robust validation. Usage: scripts/regime_stage1_pilot.sh NAME [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
exec .venv/bin/robust-vit fit \
  --config experiments/base.yaml --config experiments/data/fashion_mnist.yaml \
  --config experiments/model/vit_cpu.yaml --config experiments/method/pgd_at.yaml \
  --config experiments/eval/robust_validation.yaml \
  --model.lr_scheduler.class_path torch.optim.lr_scheduler.MultiStepLR \
  --model.lr_scheduler.init_args.gamma 0.1 \
  --test_after_fit false --name "regime_$name" --threads 2 "$@"
