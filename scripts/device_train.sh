#!/usr/bin/env bash
# Issue 17/18 training on a lent GPU, one command (see scripts/device_train.py for the plan):
#   here:   bash scripts/device_env.sh download
#   device: run(command="bash scripts/device_train.sh", carry=[".whl"], timeout_s=560)
# The model folders come back as $OUT/<name>.tar with $OUT/device_train.json; unpack them and run
# explorer.bench.model_report on them (EXPLORER_WEIGHTS_DIR) before shipping any.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
OUT=${OUT:-device_results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
python3 scripts/device_train.py --out "$OUT" --budget-s "${BUDGET_S:-400}" \
    --jobs "${JOBS:-street-unet,street-segformer,street-unet-robust}" 2>&1 | tee "$OUT/device_train.log"
