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
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from explorer.attacks.core import model_device
from explorer.data.datasets import DatasetInfo
from explorer.data.samples import list_samples, load_majority_target, load_sample
from explorer.data.worlds import WORLDS
from explorer.errors import InputError
from explorer.live.inputs import decode_target_map, decode_upload
from explorer.metrics import confusion_matrix, mean_iou, pixel_accuracy
from explorer.models import load_model
from explorer.models.architectures import CHANNELS_LAST_ON_CPU
from explorer.models.registry import check_name, get_model_entry
from explorer.targets import TARGETS, background_target, custom_target, resize_label_map, target_choices


def cached_model(name: str, device: Optional[str] = None):
    """:func:`explorer.models.load_model`, cached: sessions share read-only models.  The name
    is checked first, so a client's junk never reaches the cache as a key."""
    return _shared_model(check_name(name), device if device is None else str(device))


@functools.lru_cache(maxsize=4)
def _shared_model(name: str, device: Optional[str]):
    model = load_model(name, device)  # frozen and in eval mode, as every loaded model
    arch = get_model_entry(name).card.get("arch")
    if arch in CHANNELS_LAST_ON_CPU and model_device(model, torch.device("cpu")).type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # faster on the CPU for these networks
    return model


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


@dataclass(frozen=True)
class SceneInputs:
    """What a scene is made of before any model runs: plain data on the CPU (decoded image,
    ground truth, target map), so it can be built in the server process and cross into a
    GPU worker (ZeroGPU pickles it) without decoding anything there."""

    model_name: str
    dataset: DatasetInfo
    image: Tensor                       #: (3, H, W) float in [0, 1], CPU
    image_name: str                     #: sample name, or "upload"
    ground_truth: Optional[Tensor]      #: (H, W) int64, CPU, when the sample is labelled with the model's classes
    target: str                         #: a key of TARGETS
    target_map: Optional[Tensor] = None  #: (H, W) int64, CPU: the majority layout or an uploaded map
    notice: str = ""


def read_scene_inputs(model_name: str, sample: Optional[str] = None, upload: Any = None,
                      target: str = "untargeted", target_map: Any = None) -> SceneInputs:
    """Check the names and decode the pictures of a scene (CPU only; no model is loaded).

    ``upload`` (an array, or the bytes or path of a picture file, decoded by
    :func:`explorer.data.decode.decode_image_file`) wins over ``sample`` (a shipped sample
    name); ``target_map`` likewise (an array, or a label map file).  A sample keeps its
    ground truth when it is labelled with the model's classes; an upload (or a sample of
    the other dataset) is attacked against the clean prediction.  A target map of
    another size is resized to the image (nearest neighbour) with a notice.
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise InputError(f"unknown target {repr(target)[:60]}; choose one of {list(TARGETS)}")
    dataset = get_model_entry(model_name).dataset_info
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
            ground_truth = labels
        else:
            notice = f"{sample} is labelled with {WORLDS[world].dataset.name} classes: attacking the clean prediction"
    else:
        raise InputError("no image: pick a sample or upload a picture")
    size = tuple(image.shape[-2:])
    layout = None
    if target == "majority":
        layout = resize_label_map(load_majority_target(), size)
    elif target == "custom":
        uploaded, map_notice = decode_target_map(target_map, dataset, size)
        notice = "; ".join(filter(None, [notice, map_notice]))
        layout = custom_target(uploaded, dataset.num_classes)
    return SceneInputs(model_name=model_name, dataset=dataset, image=image, image_name=image_name,
                       ground_truth=ground_truth, target=target, target_map=layout, notice=notice)


def build_scene(inputs: SceneInputs, device: Optional[str] = None) -> Scene:
    """Load the model on ``device`` (default: CUDA when available), predict the clean image
    and build the attack's label map for the inputs' target."""
    model = cached_model(inputs.model_name, device)
    device_ = next(model.parameters()).device
    image = inputs.image[None].to(device_)
    with torch.no_grad():
        clean_prediction = model(image).argmax(1)
    ground_truth = inputs.ground_truth[None].to(device_) if inputs.ground_truth is not None else None
    reference = ground_truth if ground_truth is not None else clean_prediction
    if inputs.target == "untargeted":
        labels = reference
    elif inputs.target == "background":
        dataset = inputs.dataset
        labels = background_target(reference, dataset.background_class, keep_ignored=True,
                                   num_classes=dataset.num_classes)
    else:
        labels = inputs.target_map[None]
    return Scene(model_name=inputs.model_name, model=model, image=image, image_name=inputs.image_name,
                 ground_truth=ground_truth, clean_prediction=clean_prediction, target=inputs.target,
                 attack_labels=labels.to(device=device_, dtype=torch.long), notice=inputs.notice)


def prepare_scene(model_name: str, sample: Optional[str] = None, upload: Any = None,
                  target: str = "untargeted", target_map: Any = None,
                  device: Optional[str] = None) -> Scene:
    """Load model and image, predict, and build the attack's labels for ``target``: what
    :func:`read_scene_inputs` (names, decoding) and :func:`build_scene` (model) do in turn."""
    return build_scene(read_scene_inputs(model_name, sample, upload, target, target_map), device)


def clean_scores_per_sample(model_name: str, device: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """How well the model sees each shipped sample labelled with its classes, before any
    attack: ``{sample: {"pixel_accuracy": ..., "miou": ...}}`` against the ground truth
    (ignored pixels left out; the image's mIoU averages the classes in its truth or its
    prediction, so a missed person counts as much as the road).  For the docs' table; the
    app opens on the best-segmented sample."""
    model = cached_model(model_name, device)
    dataset = model.dataset
    device_ = next(model.parameters()).device
    scores: Dict[str, Dict[str, float]] = {}
    for name in list_samples():
        image, labels, world = load_sample(name)
        if WORLDS[world].dataset.name != dataset.name:
            continue
        with torch.no_grad():
            prediction = model(image[None].to(device_)).argmax(1).cpu()
        scores[name] = {
            "pixel_accuracy": float(pixel_accuracy(prediction, labels[None], dataset.num_classes)[0]),
            "miou": float(mean_iou(confusion_matrix(prediction, labels[None], dataset.num_classes)))}
    return scores
