#!/usr/bin/env bash
# What the GPU machine lacks, and how it gets it (sourced by device_check.sh and device_train.sh).
# Its image has torch, torchvision, timm, safetensors, huggingface_hub, scipy, tqdm and pillow,
# but not segmentation-models-pytorch (nor adv-lib), and nothing can be downloaded there. So:
#   here, once (pip reaches PyPI):   bash scripts/device_env.sh download    -> .whl/ (git-ignored)
#   there, each run (carry .whl):    source scripts/device_env.sh           -> imports work
# The explorer itself is imported from the checkout (PYTHONPATH), not installed.
# pure-Python wheels whose dependencies are in the image (adv-lib: the reference of device_check.sh;
# the explorer imports it without visdom)
WHEELS=("segmentation-models-pytorch==0.6.0" "adv-lib==0.2.8")
_device_env_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "download" ]; then
    python3 -m pip download --no-deps --only-binary=:all: -d "$_device_env_root/.whl" "${WHEELS[@]}"
    return 0 2>/dev/null || exit 0
fi
export PYTHONPATH="$_device_env_root${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if ! python3 -c "import segmentation_models_pytorch, adv_lib" 2>/dev/null; then
    if ls "$_device_env_root"/.whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$_device_env_root"/.whl/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    else
        echo "segmentation-models-pytorch is missing and no wheel was carried: run 'bash scripts/device_env.sh download' here and carry .whl" >&2
        return 1 2>/dev/null || exit 1
    fi
fi
