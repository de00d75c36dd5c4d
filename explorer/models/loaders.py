"""Loaders: turn a checkpoint (a local folder or file, or a hub id) into a SegmentationModel.

Every loader takes the checkpoint's ``source`` as its first argument, so the same code
loads the real checkpoint (hub id, torchvision weights) and, in the tests, a local copy
of a randomly initialised model of the same format.  Nothing is ever unpickled: weights
are read with safetensors, or with ``torch.load(..., weights_only=True)``.

Network policy: with ``EXPLORER_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``
set (to 1/true/yes/on) no connection is attempted and only the local caches are used;
otherwise the download host is probed with a short timeout first, so a machine without
network fails fast.  Either way a checkpoint that cannot be had raises
:class:`~explorer.errors.InputError` naming the shipped models, which work offline.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from explorer.data.datasets import get_dataset
from explorer.errors import InputError
from explorer.models.wrapper import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel

#: environment variables that switch the explorer to offline mode (any of them)
OFFLINE_VARIABLES: Tuple[str, ...] = ("EXPLORER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}
#: seconds to wait for a TCP connection to a download host before calling it unreachable
PROBE_TIMEOUT_S = 2.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")

#: smp networks are fed multiples of this (their encoders' output stride)
SMP_SIZE_DIVISOR = 32
TORCHVISION_PREFIX = "torchvision:"
#: why a weight file holding Python objects is refused (the words follow the file's name)
REFUSED_PICKLE = ("holds Python objects besides tensors; it is refused, never unpickled (only "
                  "safetensors files and plain tensor state dicts are read)")


# -- network policy ----------------------------------------------------------------------
def offline_variables() -> List[str]:
    """The offline environment variables that are set to a true value, in check order."""
    return [v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in _TRUE]


def is_offline() -> bool:
    """True when an offline variable (``EXPLORER_OFFLINE``, ``HF_HUB_OFFLINE``, ...) is set."""
    return bool(offline_variables())


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if a TCP connection to ``url``'s host opens within ``timeout`` (or a proxy is set)."""
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True  # the proxy decides; let the download itself fail if it must
    parts = urlparse(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


class ModelUnavailable(InputError):
    """A model that cannot be loaded now: its checkpoint needs a download that cannot happen
    (``kind="network"``) or its shipped files are damaged (``kind="shipped"``).
    :func:`explorer.models.registry.load_model` adds which other models still work."""

    def __init__(self, message: str, name: str, kind: str):
        super().__init__(message)
        self.name, self.kind = name, kind


def network_error(name: str, source: str, reason: str) -> ModelUnavailable:
    """The error for a checkpoint that needs a download that cannot happen now."""
    flags = offline_variables()
    how = (f"unset {', '.join(flags)} and connect to the internet" if flags
           else "connect to the internet")
    return ModelUnavailable(
        f"model {name!r} needs a network connection to download its checkpoint {source!r} "
        f"({reason}), and it is not in the local cache. To use {name!r}, {how} once; the download "
        f"is cached for later.", name, "network")


# -- small file helpers ------------------------------------------------------------------
def is_local(source: str) -> bool:
    """True if ``source`` names an existing local file or folder (else: a hub id)."""
    return Path(source).expanduser().exists()


def read_json(path: Path) -> Dict[str, Any]:
    """The JSON object in ``path``, or InputError saying what is wrong with the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object; got {type(data).__name__}")
    return data


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a state-dict file via ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path} {REFUSED_PICKLE}") from None
    except Exception as exc:  # OSError, RuntimeError, UnpicklingError, safetensors' SafetensorError, ...
        raise InputError(f"{path} is corrupt or not a weight file ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a state dict (name -> tensor)")
    return state


def load_weights(net: nn.Module, state: Dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``state`` into ``net`` (strictly, casting e.g. float16 to the net's float32)."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{path} does not fit the model's architecture: "
                         f"{' '.join(first[:3])[:600]}") from None


def finish(model: SegmentationModel) -> SegmentationModel:
    """Put a freshly built model in eval mode with frozen weights (attacks need input gradients only)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


# -- Hugging Face hub ----------------------------------------------------------------------
def _hub_errors() -> Any:
    """The module holding huggingface_hub's exception classes (moved across versions)."""
    import importlib

    try:
        return importlib.import_module("huggingface_hub.errors")
    except ImportError:  # huggingface_hub < 0.23
        return importlib.import_module("huggingface_hub.utils")


def hub_files(repo_id: str, name: str, required: Sequence[str], one_of: Sequence[str] = (),
              optional: Sequence[str] = ()) -> Path:
    """Download (or find in the cache) files of hub repository ``repo_id``; return their folder.

    ``required`` files must all exist, at least one of ``one_of`` must (the first found
    wins), ``optional`` ones are fetched when present.  Offline (or when the hub cannot
    be reached) only the local cache is read, without calling any networking code.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import validate_repo_id

    errors = _hub_errors()
    try:
        validate_repo_id(repo_id)
    except errors.HFValidationError:
        raise InputError(f"model {name!r}: {repo_id!r} is neither an existing local folder "
                         f"nor a valid hub repository id") from None
    flags = offline_variables()
    local_only = bool(flags)
    reason = f"offline mode: {', '.join(flags)} is set" if flags else ""
    if not local_only and not reachable(constants.ENDPOINT):
        local_only, reason = True, f"cannot reach {urlparse(constants.ENDPOINT).hostname}"

    def fetch(filename: str, must: bool) -> Optional[Path]:
        if local_only:
            cached = try_to_load_from_cache(repo_id, filename)
            if isinstance(cached, str):
                return Path(cached)
            if must:
                raise network_error(name, repo_id, reason)
            return None
        try:
            return Path(hf_hub_download(repo_id, filename))
        except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
            if must:
                raise network_error(name, repo_id, f"offline: {exc}") from None
            return None
        except errors.RepositoryNotFoundError:
            raise InputError(f"model {name!r}: there is no hub repository {repo_id!r} "
                             f"(or it needs a login)") from None
        except errors.RevisionNotFoundError:
            raise InputError(f"model {name!r}: hub repository {repo_id!r} has no such revision") from None
        except errors.EntryNotFoundError:
            if must:
                raise InputError(f"model {name!r}: hub repository {repo_id!r} has no file {filename!r}") from None
            return None
        except Exception as exc:  # connection errors (requests / httpx), timeouts, ...
            raise network_error(name, repo_id, f"{type(exc).__name__}: {exc}") from None

    paths = [path for path in (fetch(f, must=True) for f in required) if path is not None]
    if one_of:
        for filename in one_of:
            found = fetch(filename, must=False)
            if found is not None:
                paths.append(found)
                break
        else:
            if local_only:
                raise network_error(name, repo_id, reason)
            raise InputError(f"model {name!r}: hub repository {repo_id!r} has none of {list(one_of)}")
    for filename in optional:
        fetch(filename, must=False)
    return paths[0].parent


# -- segmentation-models-pytorch -----------------------------------------------------------
def smp_from_dir(directory: Path, num_classes: Optional[int] = None) -> nn.Module:
    """Build an smp network from a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).

    The encoder is built with ``encoder_weights=None`` (no ImageNet download) and the
    saved weights are loaded strictly; float16 files are cast back to float32.
    """
    import segmentation_models_pytorch as smp

    directory = Path(directory)
    config_path = directory / "config.json"
    config = read_json(config_path)
    class_name = config.pop("_model_class", None)
    model_class = getattr(smp, class_name, None) if isinstance(class_name, str) else None
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise InputError(f"{config_path}: '_model_class' must name a segmentation_models_pytorch "
                         f"architecture; got {class_name!r}")
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    kwargs["encoder_weights"] = None
    if num_classes is not None and kwargs.get("classes") not in (None, num_classes):
        raise InputError(f"{config_path}: the network has {kwargs.get('classes')} classes, "
                         f"its dataset {num_classes}")
    try:
        net = model_class(**kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{config_path}: cannot build {class_name} from it ({exc})") from None
    weights_path = directory / "model.safetensors"
    load_weights(net, read_state_dict(weights_path), weights_path)
    return net


def _albumentations_eval(path: Path) -> Dict[str, Any]:
    """``input_size``/``mean``/``std`` (in [0, 1] units) from an smp-hub albumentations eval config."""
    settings: Dict[str, Any] = {}
    if not path.is_file():
        return settings
    config = read_json(path)
    for step in config.get("transform", {}).get("transforms", []):
        kind = str(step.get("__class_fullname__", "")).rsplit(".", 1)[-1]
        if kind == "Resize":
            settings["input_size"] = (int(step["height"]), int(step["width"]))
        elif kind == "Normalize":
            # albumentations: (x - mean * max_pixel_value) / (std * max_pixel_value), x in 0..255
            scale = float(step.get("max_pixel_value", 255.0)) / 255.0
            settings["mean"] = tuple(float(m) * scale for m in step["mean"])
            settings["std"] = tuple(float(s) * scale for s in step["std"])
    return settings


def load_smp_pretrained(source: str, *, name: str, dataset: str,
                        input_size: Optional[Tuple[int, int]] = None) -> SegmentationModel:
    """An smp ``save_pretrained`` checkpoint (local folder or hub id, e.g. ``smp-hub/...``).

    Normalisation and working resolution come from the checkpoint's
    ``albumentations_config_eval.json`` when it has one (smp-hub models do), else
    ImageNet statistics and ``input_size``.
    """
    if is_local(source):
        directory = Path(source).expanduser()
    else:
        directory = hub_files(source, name, required=("config.json", "model.safetensors"),
                              optional=("albumentations_config_eval.json",))
    info = get_dataset(dataset)
    settings = _albumentations_eval(directory / "albumentations_config_eval.json")
    net = smp_from_dir(directory, info.num_classes)
    return finish(SegmentationModel(
        net, info, name, mean=settings.get("mean", IMAGENET_MEAN), std=settings.get("std", IMAGENET_STD),
        input_size=settings.get("input_size", input_size), size_divisor=SMP_SIZE_DIVISOR))


def load_shipped(source: str, *, name: str) -> SegmentationModel:
    """A shipped model: an smp ``save_pretrained`` folder plus its ``card.json``.

    The card gives the dataset and, optionally, ``input_size`` ([H, W] or null), ``mean``,
    ``std`` and ``size_divisor`` (default 32).  Any unreadable file raises an InputError
    that names it and says the other shipped models are unaffected.
    """
    directory = Path(source)
    try:
        card = read_json(directory / "card.json")
        info = get_dataset(str(card.get("dataset")))
        net = smp_from_dir(directory, info.num_classes)
        model = SegmentationModel(
            net, info, name, mean=card.get("mean") or IMAGENET_MEAN, std=card.get("std") or IMAGENET_STD,
            input_size=card.get("input_size"), size_divisor=card.get("size_divisor", SMP_SIZE_DIVISOR))
    except InputError as exc:
        raise ModelUnavailable(f"shipped model {name!r} cannot be loaded: {exc}. Restore the file or "
                               f"retrain the model (python -m explorer.tools.train).", name, "shipped") from None
    return finish(model)


# -- torchvision ---------------------------------------------------------------------------
def _torch_hub_file(url: str) -> Path:
    """Where ``torch.hub`` caches the download of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _torchvision_weights(source: str, name: str, weights_enum: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """State dict of ``torchvision:<Enum>.<MEMBER>`` from the torch hub cache or a download."""
    import torchvision.models.segmentation as segmentation

    spec = source[len(TORCHVISION_PREFIX):]
    enum_name, _, member = spec.partition(".")
    if enum_name != weights_enum or not member:
        raise InputError(f"model {name!r}: source must be a weight file or "
                         f"'{TORCHVISION_PREFIX}{weights_enum}.<MEMBER>'; got {source!r}")
    enum = getattr(segmentation, weights_enum)
    try:
        weights = getattr(enum, member) if member == "DEFAULT" else enum[member]
    except (AttributeError, KeyError):
        raise InputError(f"model {name!r}: {weights_enum} has no member {member!r}; "
                         f"known: {[w.name for w in enum]}") from None
    url = weights.url
    cached = _torch_hub_file(url)
    if cached.is_file():
        return read_state_dict(cached), str(cached)
    if is_offline():
        raise network_error(name, url, f"offline mode: {', '.join(offline_variables())} is set")
    if not reachable(url):
        raise network_error(name, url, f"cannot reach {urlparse(url).hostname}")
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True,
                                                   weights_only=True)
    except (URLError, OSError) as exc:
        raise network_error(name, url, f"{type(exc).__name__}: {exc}") from None
    except (RuntimeError, pickle.UnpicklingError) as exc:
        raise InputError(f"model {name!r}: the download of {url} is corrupt ({exc}); delete {cached} "
                         f"and try again") from None
    return state, url


def load_torchvision_voc(source: str, *, name: str, builder: str, weights_enum: str) -> SegmentationModel:
    """A torchvision 21-class (VOC labels) segmentation model.

    ``source`` is ``torchvision:<weights_enum>.DEFAULT`` (the published weights: torch hub
    cache, else a download) or a local state-dict file of the same architecture
    (``.safetensors``, or a ``torch.save`` file read with ``weights_only=True``).  As in
    torchvision's evaluation transform, the input is resized so its shorter side is 520
    pixels and normalised with ImageNet statistics.  The auxiliary head (training only)
    is dropped after loading.
    """
    import torchvision.models.segmentation as segmentation

    if source.startswith(TORCHVISION_PREFIX):
        state, origin = _torchvision_weights(source, name, weights_enum)
    else:
        path = Path(source).expanduser()
        state, origin = read_state_dict(path), str(path)
    info = get_dataset("voc")
    kwargs: Dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": info.num_classes}
    if not builder.startswith("lraspp"):
        kwargs["aux_loss"] = True  # the published weights include the auxiliary head
    net = getattr(segmentation, builder)(**kwargs)
    load_weights(net, state, Path(origin))
    if getattr(net, "aux_classifier", None) is not None:
        net.aux_classifier = None  # eval output is "out" only; skip the aux head's compute
    return finish(SegmentationModel(net, info, name, output_key="out", resize_short_side=520))


# -- transformers --------------------------------------------------------------------------
def _processor_settings(path: Path) -> Dict[str, Any]:
    """``input_size``/``mean``/``std`` from a transformers ``preprocessor_config.json``, if any."""
    settings: Dict[str, Any] = {}
    if not path.is_file():
        return settings
    config = read_json(path)
    if config.get("do_normalize", True):
        if "image_mean" in config:
            settings["mean"] = tuple(config["image_mean"])
        if "image_std" in config:
            settings["std"] = tuple(config["image_std"])
    size = config.get("size")
    if config.get("do_resize", True) and size is not None:
        if isinstance(size, dict) and "height" in size and "width" in size:
            settings["input_size"] = (int(size["height"]), int(size["width"]))
        elif isinstance(size, int):
            settings["input_size"] = (size, size)
    return settings


def _no_unpickling(model_class: Any, directory: Path, name: str) -> Dict[str, Any]:
    """``from_pretrained`` options that never unpickle: safetensors when the folder has
    them, else ``weights_only=True`` for a ``pytorch_model.bin`` (a transformers too old to
    accept it is refused rather than trusted to default to it)."""
    import inspect

    if (directory / "model.safetensors").is_file():
        return {"use_safetensors": True}
    if "weights_only" in inspect.signature(model_class.from_pretrained).parameters:
        return {"weights_only": True}
    raise InputError(f"model {name!r}: {directory} has no model.safetensors, and this transformers "
                     f"version cannot be told to read pytorch_model.bin without unpickling it; "
                     f"upgrade transformers or convert the weights to safetensors")


def load_hf_segformer(source: str, *, name: str, dataset: str = "cityscapes",
                      input_size: Optional[Tuple[int, int]] = None) -> SegmentationModel:
    """A transformers ``SegformerForSemanticSegmentation`` checkpoint (local folder or hub id).

    The image processor's steps live in the wrapper: its ``preprocessor_config.json``
    (when present) sets the resize and the normalisation (ImageNet statistics otherwise);
    the 1/4-resolution logits are upsampled to the input size.  Needs the ``hf`` extra.
    """
    try:
        from transformers import SegformerForSemanticSegmentation
    except ImportError:
        raise InputError(f"model {name!r} needs the transformers library: "
                         f"pip install 'seg-attack-explorer[hf]' (or pip install transformers)") from None
    if is_local(source):
        directory = Path(source).expanduser()
    else:
        directory = hub_files(source, name, required=("config.json",),
                              one_of=("model.safetensors", "pytorch_model.bin"),
                              optional=("preprocessor_config.json",))
    info = get_dataset(dataset)
    options = _no_unpickling(SegformerForSemanticSegmentation, Path(directory), name)
    try:
        net = SegformerForSemanticSegmentation.from_pretrained(str(directory), local_files_only=True, **options)
    except pickle.UnpicklingError:
        raise InputError(f"model {name!r}: {directory / 'pytorch_model.bin'} {REFUSED_PICKLE}") from None
    except Exception as exc:  # OSError, ValueError, a damaged file, ...
        raise InputError(f"model {name!r}: cannot load a SegFormer from {directory} "
                         f"({type(exc).__name__}: {str(exc)[:400]})") from None
    net = net.float()
    if net.config.num_labels != info.num_classes:
        raise InputError(f"model {name!r}: {directory} has {net.config.num_labels} labels, "
                         f"dataset {info.name!r} has {info.num_classes}")
    settings = _processor_settings(directory / "preprocessor_config.json")
    return finish(SegmentationModel(
        net, info, name, mean=settings.get("mean", IMAGENET_MEAN), std=settings.get("std", IMAGENET_STD),
        input_size=settings.get("input_size", input_size)))
