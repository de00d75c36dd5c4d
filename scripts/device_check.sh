#!/usr/bin/env bash
# One short GPU check for a session that is lent a device (about 5 minutes on one GPU):
# every attack's time over the model calls it counted and its peak memory over the model's
# own (explorer-bench speed) at the paper's 1024 x 2048 for two architectures, and ours
# against adv-lib on the GPU. Results land in ${OUT:-device_results}/.
# The device machine has no network: adv-lib must already be installed there (or carried);
# without it the reference comparison is skipped, the speed tables still run. The image lacks
# segmentation-models-pytorch: run `bash scripts/device_env.sh download` here first and carry .whl.
#   bash scripts/device_check.sh                 # on the GPU machine
#   DEVICE=cpu STEPS=3 SIZE="64 128" LIMIT=1 bash scripts/device_check.sh   # a dry run here
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-50}
SIZE=(${SIZE:-1024 2048})
LIMIT=${LIMIT:-4}
OUT=${OUT:-device_results}
mkdir -p "$OUT"
source scripts/device_env.sh   # segmentation-models-pytorch from the carried .whl, the explorer from the checkout
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$OUT/gpu.txt"
for arch in fpn-mobilenet segformer-b0; do
    python3 -m explorer.bench speed --device "$DEVICE" --arch "$arch" --height "${SIZE[0]}" --width "${SIZE[1]}" \
        --steps "$STEPS" | tee "$OUT/speed_${arch}.txt"
done
if ! python3 -c "import adv_lib" 2>/dev/null; then
    echo "adv-lib is not installed on this machine: reference comparison skipped" | tee "$OUT/reference_skipped.txt"
    exit 0
fi
python3 -m explorer.bench reference --device "$DEVICE" --model street-fpn-mobilenet --limit "$LIMIT" \
    --steps "$((STEPS * 10))" --attacks alma_prox --modes untargeted --out "$OUT/reference_alma"
