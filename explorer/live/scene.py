"""The scene an attack works on: a model (cached, shared), one image, its reference labels and
the attack's label map for the chosen target.

:func:`prepare_scene` loads a model, an image (a shipped sample, or an upload decoded by
:mod:`explorer.data.decode`), its reference labels (the ground truth of a sample, else the
clean prediction) and the attack's label map — untargeted, all-background, the smoothed
majority-label street layout ([Rony2023] §5.4) or an uploaded label map.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from explorer.data.datasets import DatasetInfo
from explorer.data.samples import load_majority_target, load_sample
from explorer.data.worlds import WORLDS
from explorer.errors import InputError
from explorer.live.inputs import decode_target_map, decode_upload
from explorer.models import load_model
from explorer.models.registry import check_name
from explorer.targets import TARGETS, background_target, custom_target, resize_label_map, target_choices


def cached_model(name: str, device: Optional[str] = None):
    """:func:`explorer.models.load_model`, cached: sessions share read-only models.  The name
    is checked first, so a client's junk never reaches the cache as a key."""
    return _shared_model(check_name(name), device if device is None else str(device))


@functools.lru_cache(maxsize=4)
def _shared_model(name: str, device: Optional[str]):
    return load_model(name, device)  # frozen and in eval mode, as every loaded model


@dataclass
class Scene:
    """What an attack works on: model, one image, reference labels and the attack's label map."""

    model_name: str
    model: torch.nn.Module
    image: Tensor              #: (1, 3, H, W) in [0, 1], on the model's device
    image_name: str            #: sample name, or "upload"
    ground_truth: Optional[Tensor]  #: (1, H, W) int64 when the image is a sample of the model's dataset
    clean_prediction: Tensor   #: (1, H, W) int64
    target: str                #: a key of TARGETS
    attack_labels: Tensor      #: (1, H, W): reference labels (untargeted) or the target map
    notice: str = ""

    @property
    def targeted(self) -> bool:
        return self.target != "untargeted"

    @property
    def dataset(self) -> DatasetInfo:
        return self.model.dataset

    @property
    def reference(self) -> Tensor:
        """Labels the clean and adversarial accuracy are measured against."""
        return self.ground_truth if self.ground_truth is not None else self.clean_prediction

    @property
    def reference_name(self) -> str:
        return "ground truth" if self.ground_truth is not None else "clean prediction"


def prepare_scene(model_name: str, sample: Optional[str] = None, upload: Any = None,
                  target: str = "untargeted", target_map: Any = None,
                  device: Optional[str] = None) -> Scene:
    """Load model and image, predict, and build the attack's labels for ``target``.

    ``upload`` (an array, or the bytes or path of a picture file, decoded by
    :func:`explorer.data.decode.decode_image_file`) wins over ``sample`` (a shipped sample
    name); ``target_map`` likewise (an array, or a label map file).  A sample keeps its
    ground truth when it is labelled with the model's classes; an upload (or a sample of
    the other dataset) is attacked against the clean prediction.  A target map of
    another size is resized to the image (nearest neighbour) with a notice.
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise InputError(f"unknown target {repr(target)[:60]}; choose one of {list(TARGETS)}")
    model = cached_model(model_name, device)
    dataset = model.dataset
    if target not in target_choices(dataset):
        raise InputError(f"target {TARGETS[target]!r} is not available for {model_name} "
                         f"({dataset.name} classes); choose one of {target_choices(dataset)}")
    ground_truth = None
    notice = ""
    if upload is not None:
        image, notice = decode_upload(upload)
        image_name = "upload"
    elif sample:
        image, labels, world = load_sample(sample)
        image_name = sample
        if WORLDS[world].dataset.name == dataset.name:
            ground_truth = labels[None]
        else:
            notice = f"{sample} is labelled with {WORLDS[world].dataset.name} classes: attacking the clean prediction"
    else:
        raise InputError("no image: pick a sample or upload a picture")
    device_ = next(model.parameters()).device
    image = image[None].to(device_)
    with torch.no_grad():
        clean_prediction = model(image).argmax(1)
    if ground_truth is not None:
        ground_truth = ground_truth.to(device_)
    reference = ground_truth if ground_truth is not None else clean_prediction
    size = tuple(image.shape[-2:])
    if target == "untargeted":
        labels = reference
    elif target == "background":
        labels = background_target(reference, dataset.background_class, keep_ignored=True,
                                   num_classes=dataset.num_classes)
    elif target == "majority":
        layout = load_majority_target()
        labels = resize_label_map(layout, size)[None].to(device_)
    else:
        uploaded, map_notice = decode_target_map(target_map, dataset, size)
        notice = "; ".join(filter(None, [notice, map_notice]))
        labels = custom_target(uploaded, dataset.num_classes)[None].to(device_)
    return Scene(model_name=model_name, model=model, image=image, image_name=image_name,
                 ground_truth=ground_truth, clean_prediction=clean_prediction, target=target,
                 attack_labels=labels.to(device=device_, dtype=torch.long), notice=notice)
