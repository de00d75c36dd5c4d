"""Segmentation models for the explorer: one wrapper, one registry, shipped and online models.

Every model is a :class:`SegmentationModel`: images ``(N, 3, H, W)`` in [0, 1] in,
logits ``(N, K, H, W)`` at the input resolution out (normalisation and resizing inside,
so attack budgets are in pixel units)::

    from explorer.models import available_models, load_model

    print(available_models("shipped"))        # trained here, work offline
    model = load_model("tv-deeplabv3-mobilenet-v3-voc")   # downloaded once, then cached
    logits = model(images)                     # (N, 21, H, W); model.class_names, model.palette

* :mod:`explorer.models.wrapper` — :class:`SegmentationModel`
* :mod:`explorer.models.registry` — :class:`ModelEntry`, :data:`MODELS`, shipped-model
  discovery (``card.json`` in ``$EXPLORER_WEIGHTS_DIR`` or ``explorer/models/weights``)
* :mod:`explorer.models.loaders` — checkpoint loaders (smp, torchvision, transformers)
  and the offline policy (``EXPLORER_OFFLINE`` / ``HF_HUB_OFFLINE``)
"""
from explorer.models.loaders import is_offline
from explorer.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelEntry,
    available_models,
    get_model_entry,
    load_model,
    refresh_shipped,
    weights_dir,
)
from explorer.models.wrapper import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "ModelEntry",
    "SegmentationModel",
    "available_models",
    "get_model_entry",
    "is_offline",
    "load_model",
    "refresh_shipped",
    "weights_dir",
]
