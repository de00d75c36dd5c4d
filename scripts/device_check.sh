#!/usr/bin/env bash
# One short GPU check for a session that is lent a device (about 5 minutes on one GPU):
# ALMA prox time over plain forward+backward time at the paper's resolution, and ours
# against adv-lib on the GPU. Results land in ${OUT:-device_results}/.
#   bash scripts/device_check.sh                 # on the GPU machine
#   DEVICE=cpu STEPS=3 SIZE="64 128" LIMIT=1 bash scripts/device_check.sh   # a dry run here
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-50}
SIZE=(${SIZE:-512 1024})
LIMIT=${LIMIT:-4}
OUT=${OUT:-device_results}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
pip install -q -e . >/dev/null
pip install -q --no-deps adv-lib==0.2.8 >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$OUT/gpu.txt"
for arch in fpn-mobilenet segformer-b0; do
    python -m explorer.bench speed --device "$DEVICE" --arch "$arch" --height "${SIZE[0]}" --width "${SIZE[1]}" \
        --steps "$STEPS" | tee "$OUT/speed_${arch}.txt"
done
python -m explorer.bench reference --device "$DEVICE" --model street-fpn-mobilenet --limit "$LIMIT" \
    --steps "$((STEPS * 10))" --attacks alma_prox --modes untargeted --out "$OUT/reference_alma"
