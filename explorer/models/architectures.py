"""The network architectures the project trains and benchmarks, built in one place.

:func:`build_network` makes a randomly initialised segmentation-models-pytorch network of a
named architecture; the trainer (:mod:`explorer.tools.train`) and the speed benchmark
(:mod:`explorer.bench.speed`) share it.
"""
from __future__ import annotations

from typing import Dict, Tuple

import segmentation_models_pytorch as smp
import torch

#: architecture name -> (smp class name, encoder name)
ARCHITECTURES: Dict[str, Tuple[str, str]] = {
    "fpn-mobilenet": ("FPN", "mobilenet_v2"),
    "unet-mobilenet": ("Unet", "mobilenet_v2"),
    "segformer-b0": ("Segformer", "mit_b0"),
}

TITLES = {"fpn-mobilenet": "FPN MobileNetV2", "unet-mobilenet": "U-Net MobileNetV2", "segformer-b0": "SegFormer MiT-B0"}

#: architectures whose forward+backward is faster on the CPU in the channels-last memory
#: format (measured, one thread, 1 × 3 × 128 × 256: FPN 0.77–0.98 and U-Net 0.86–0.90 of the
#: contiguous time; SegFormer-B0 0.99–1.39, so it stays contiguous).  The app runs these
#: models channels-last on the CPU (:func:`explorer.live.scene.cached_model`); their logits
#: then differ from the contiguous model's by float rounding (~5e-5).
CHANNELS_LAST_ON_CPU = frozenset({"fpn-mobilenet", "unet-mobilenet"})

def build_network(arch: str, num_classes: int) -> torch.nn.Module:
    """A randomly initialised smp network of the named architecture."""
    family, encoder = ARCHITECTURES[arch]
    return getattr(smp, family)(encoder_name=encoder, encoder_weights=None, classes=num_classes)
