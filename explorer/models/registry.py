"""The model registry: every model by name, shipped ones (offline) first, then online ones.

* **Shipped** models are folders ``<weights dir>/<name>/`` holding smp's
  ``save_pretrained`` files (``config.json`` + ``model.safetensors``, float16 allowed) and
  a ``card.json`` (see :func:`scan_weights` for its fields).  They are discovered by
  scanning for ``card.json``, so a trainer adds a model without touching code.  The
  weights dir is ``$EXPLORER_WEIGHTS_DIR`` if set, else :data:`WEIGHTS_DIR`;
  :func:`refresh_shipped` re-scans (e.g. after training, or to point at another folder).
* **Online** models are published checkpoints downloaded on first use (and cached):
  smp-hub Cityscapes SegFormers, torchvision's VOC-label models, transformers'
  Cityscapes SegFormer.  Offline they raise :class:`~explorer.errors.InputError`
  naming the shipped alternatives.

:data:`MODELS` is a plain dict name -> :class:`ModelEntry`.
"""
from __future__ import annotations

import importlib.util
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from explorer.data.datasets import DATASETS, DatasetInfo, get_dataset
from explorer.data.resources import package_folder
from explorer.errors import InputError
from explorer.models import loaders
from explorer.models.wrapper import SegmentationModel

#: default folder of the shipped models, package data read through importlib.resources
#: (overridden by $EXPLORER_WEIGHTS_DIR)
WEIGHTS_DIR = package_folder("explorer.models", "weights")
WEIGHTS_DIR_VARIABLE = "EXPLORER_WEIGHTS_DIR"
KINDS = ("shipped", "online")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: what it is, where its checkpoint lives, how to load it.

    ``loader(source)`` builds the :class:`SegmentationModel`; ``source`` is the local
    folder of a shipped model or the checkpoint id of an online one.  ``world`` is the
    procedural world a shipped model was trained on; ``card`` its whole ``card.json``.
    """

    name: str
    title: str
    dataset: str
    kind: str
    description: str
    source: str
    loader: Callable[[str], SegmentationModel] = field(repr=False, compare=False)
    world: Optional[str] = None
    card: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: packages the loader imports beyond the explorer's own dependencies (an extra's)
    requires: Tuple[str, ...] = ()

    def missing_packages(self) -> List[str]:
        """The packages of :attr:`requires` this environment lacks (a model that cannot load here)."""
        return [package for package in self.requires if importlib.util.find_spec(package) is None]

    @property
    def dataset_info(self) -> DatasetInfo:
        """The :class:`DatasetInfo` of the model's classes."""
        return get_dataset(self.dataset)

    def load(self, source: Optional[str] = None) -> SegmentationModel:
        """Build the model from ``source`` (default: the entry's own), on the CPU, in eval mode."""
        return self.loader(self.source if source is None else str(source))


# -- online models -------------------------------------------------------------------------
def _smp_segformer(name: str, variant: str, hub_id: str, size: Tuple[int, int]) -> ModelEntry:
    """Entry of an smp-hub Cityscapes SegFormer."""
    return ModelEntry(
        name=name, title=f"SegFormer-{variant.upper()} — Cityscapes (smp-hub, {size[0]}×{size[1]})",
        dataset="cityscapes", kind="online",
        description=(f"SegFormer (MiT-{variant.upper()} encoder) trained on Cityscapes for 160k iterations "
                     f"with {size[0]}×{size[1]} crops (mmsegmentation weights converted to "
                     f"segmentation-models-pytorch). Input resized to {size[0]}×{size[1]} with ImageNet "
                     f"normalisation, as in the checkpoint's evaluation config. Downloaded from the "
                     f"Hugging Face hub on first use."),
        source=hub_id, loader=partial(loaders.load_smp_pretrained, name=name, dataset="cityscapes",
                                      input_size=size))


def _torchvision(name: str, title: str, builder: str, weights_enum: str, miou: float) -> ModelEntry:
    """Entry of a torchvision COCO-trained model with the 21 Pascal VOC labels."""
    return ModelEntry(
        name=name, title=f"{title} — VOC labels (torchvision)", dataset="voc", kind="online",
        description=(f"torchvision's {title} trained on the COCO subset with the 20 Pascal VOC categories "
                     f"(+ background); {miou} mIoU on COCO val2017 (VOC labels). Input resized to a "
                     f"shorter side of 520 px with ImageNet normalisation, as torchvision's transform. "
                     f"Downloaded from download.pytorch.org on first use."),
        source=f"{loaders.TORCHVISION_PREFIX}{weights_enum}.DEFAULT",
        loader=partial(loaders.load_torchvision_voc, name=name, builder=builder, weights_enum=weights_enum))


def _hf_segformer(name: str, variant: str, hub_id: str, size: Tuple[int, int]) -> ModelEntry:
    """Entry of an NVIDIA Cityscapes SegFormer in transformers' format."""
    return ModelEntry(
        name=name, title=f"SegFormer-{variant.upper()} — Cityscapes (transformers, {size[0]}×{size[1]})",
        dataset="cityscapes", kind="online",
        description=(f"NVIDIA's SegFormer (MiT-{variant.upper()}) fine-tuned on Cityscapes at "
                     f"{size[0]}×{size[1]}, run with transformers (needs the 'hf' extra). Input "
                     f"preprocessed as its image processor does (resize, ImageNet normalisation); the "
                     f"1/4-resolution logits are upsampled. Downloaded from the Hugging Face hub on first use."),
        source=hub_id, loader=partial(loaders.load_hf_segformer, name=name, dataset="cityscapes",
                                      input_size=size),
        requires=("transformers",))


#: the online models, in display order (ids checked against the hub / torchvision)
ONLINE_MODELS: Dict[str, ModelEntry] = {e.name: e for e in (
    _smp_segformer("smp-segformer-b0-cityscapes", "b0", "smp-hub/segformer-b0-1024x1024-city-160k", (1024, 1024)),
    _smp_segformer("smp-segformer-b0-cityscapes-512x1024", "b0", "smp-hub/segformer-b0-512x1024-city-160k",
                   (512, 1024)),
    _smp_segformer("smp-segformer-b2-cityscapes", "b2", "smp-hub/segformer-b2-1024x1024-city-160k", (1024, 1024)),
    _smp_segformer("smp-segformer-b5-cityscapes", "b5", "smp-hub/segformer-b5-1024x1024-city-160k", (1024, 1024)),
    _torchvision("tv-deeplabv3-mobilenet-v3-voc", "DeepLabV3 MobileNetV3-Large", "deeplabv3_mobilenet_v3_large",
                 "DeepLabV3_MobileNet_V3_Large_Weights", 60.3),
    _torchvision("tv-lraspp-mobilenet-v3-voc", "LR-ASPP MobileNetV3-Large", "lraspp_mobilenet_v3_large",
                 "LRASPP_MobileNet_V3_Large_Weights", 57.9),
    _torchvision("tv-fcn-resnet50-voc", "FCN ResNet-50", "fcn_resnet50", "FCN_ResNet50_Weights", 60.5),
    _hf_segformer("hf-segformer-b0-cityscapes", "b0", "nvidia/segformer-b0-finetuned-cityscapes-1024-1024",
                  (1024, 1024)),
)}

#: the shipped model the app opens on and the benchmark defaults to: the best street model
#: (validation mIoU in ``docs/worlds_and_models.md``; the first shipped model when it is missing)
DEFAULT_MODEL = "street-unet-mobilenet"

#: every registered model, shipped first: name -> entry (rebuilt in place by refresh_shipped)
MODELS: Dict[str, ModelEntry] = {}


# -- shipped models ------------------------------------------------------------------------
def check_name(name: Any) -> str:
    """``name`` if it is a well-formed model name (no path separators, no '..'), else InputError."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InputError(f"invalid model name {repr(name)[:60]}: names are letters, digits, '-', '_', '.', '+', "
                         f"and cannot contain path separators or '..'")
    return name


def weights_dir() -> Path:
    """The folder scanned for shipped models: ``$EXPLORER_WEIGHTS_DIR`` or :data:`WEIGHTS_DIR`."""
    override = os.environ.get(WEIGHTS_DIR_VARIABLE)
    return Path(override).expanduser() if override else WEIGHTS_DIR


def scan_weights(directory: Union[str, Path]) -> Dict[str, ModelEntry]:
    """Shipped-model entries of every ``<directory>/<name>/card.json``, sorted by name.

    The folder name is the model name.  ``card.json`` must be a JSON object with
    ``dataset`` ("cityscapes" or "voc"); ``title``, ``description``, ``world`` are shown;
    ``input_size`` ([H, W] or null), ``mean``, ``std`` and ``size_divisor`` configure the
    wrapper when the model is loaded.  A folder with a bad card is skipped with a warning
    (the other models stay available).
    """
    directory = Path(directory)
    entries: Dict[str, ModelEntry] = {}
    if not directory.is_dir():
        return entries
    for card_path in sorted(directory.glob("*/card.json")):
        folder = card_path.parent
        name = folder.name
        try:
            check_name(name)
            card = loaders.read_json(card_path)
            dataset = card.get("dataset")
            if dataset not in DATASETS:
                raise InputError(f"{card_path}: 'dataset' must be one of {sorted(DATASETS)}; got {dataset!r}")
        except InputError as exc:
            warnings.warn(f"skipping shipped model folder {folder}: {exc}", stacklevel=2)
            continue
        if name in ONLINE_MODELS:
            warnings.warn(f"skipping shipped model {name!r}: an online model has that name", stacklevel=2)
            continue
        if card.get("name") not in (None, name):
            warnings.warn(f"{card_path}: 'name' is {card.get('name')!r} but the folder is {name!r}; "
                          f"using the folder name", stacklevel=2)
        world = card.get("world")
        entries[name] = ModelEntry(
            name=name, title=str(card.get("title") or name), dataset=dataset, kind="shipped",
            description=str(card.get("description", "")), source=str(folder),
            loader=partial(loaders.load_shipped, name=name),
            world=None if world is None else str(world), card=card)
    return entries


def refresh_shipped(directory: Optional[Union[str, Path]] = None) -> List[str]:
    """Re-scan the shipped models (in ``directory``, default :func:`weights_dir`); return their names.

    :data:`MODELS` is updated in place: shipped models first, then the online ones.
    """
    shipped = scan_weights(weights_dir() if directory is None else directory)
    MODELS.clear()
    MODELS.update(shipped)
    MODELS.update(ONLINE_MODELS)
    return list(shipped)


# -- public API ----------------------------------------------------------------------------
def available_models(kind: Optional[str] = None) -> List[str]:
    """Names of the registered models (shipped first), optionally only one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be one of {list(KINDS)} or None; got {kind!r}")
    return [name for name, entry in MODELS.items() if kind is None or entry.kind == kind]


def get_model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` called ``name``, or InputError listing the available ones."""
    check_name(name)
    try:
        return MODELS[name]
    except KeyError:
        shipped, online = available_models("shipped"), available_models("online")
        raise InputError(f"unknown model {repr(name)[:60]}. Shipped (offline): {shipped or 'none installed'}; "
                         f"online (downloaded on first use): {online}") from None


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"invalid device {device!r}; use e.g. 'cpu' or 'cuda'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return resolved


def load_model(name: str, device: Optional[Union[str, torch.device]] = None) -> SegmentationModel:
    """Load the registered model ``name`` on ``device`` (default: CUDA if available), in eval mode
    with frozen weights (attacks differentiate with respect to the input only)."""
    entry = get_model_entry(name)
    target = resolve_device(device)
    try:
        model = entry.load()
    except loaders.ModelUnavailable as error:
        raise InputError(f"{error} {_what_still_works(error)}") from None
    return model.to(target).eval()


def _what_still_works(error: "loaders.ModelUnavailable") -> str:
    """The sentence naming the shipped models that work when ``error``'s model does not."""
    others = [n for n in available_models("shipped") if n != error.name]
    if error.kind == "network":
        return f"Shipped models work offline: {', '.join(others) if others else 'none are installed'}."
    return (f"The other shipped models ({', '.join(others)}) still work." if others
            else "No other shipped model is installed.")


refresh_shipped()
