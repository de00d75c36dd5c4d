"""Where the benchmark's images come from, and the labels each attack mode aims at.

An image source is named on the command line by one of

* ``samples`` — the shipped sample images of the model's world (``explorer/data/sample_images/``);
* ``seeds:A-B`` — procedural scenes of the model's world, seeds ``A`` to ``B`` inclusive,
  rendered at the world's training resolution (pick seeds outside
  :func:`explorer.data.splits.training_seeds`, e.g. the validation seeds 10000-10199);
* a folder path ``DIR`` holding ``DIR/images/<name>.<png|jpg|jpeg>`` and
  ``DIR/labels/<name>.png`` — label maps whose pixel values are the model's class ids
  (255 = ignored), as palette or grey PNGs, or colours of the model's dataset palette.
  Cityscapes users convert ``gtFine`` label ids to train ids first.  Pictures and label
  maps are decoded by the project's one decoder (:func:`explorer.data.decode.decode_image_file`,
  :func:`explorer.data.decode.decode_label_file`), exactly as the app and the notebooks decode
  them (16-bit pictures scaled by their full range, EXIF orientation applied, palette
  label maps read by their colours, ...); a file it cannot read stops the run with an
  :class:`~explorer.errors.InputError` naming the file.

Every image gets a stable id (``samples/street_000``, ``seeds/10003``, ``folder/<name>``)
that keys its results in the JSONL file.
"""
from __future__ import annotations

import numbers
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch import Tensor

from explorer.data.decode import ALLOWED_FORMATS, decode_image_file, decode_label_file
from explorer.data.samples import SAMPLES_DIR, list_samples, load_sample, paper_target
from explorer.data.worlds import WORLDS, render_batch, world_of_dataset
from explorer.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def warn(message: str) -> None:
    """One warning line on stderr (a benchmark's results go to stdout)."""
    print(f"explorer-bench: warning: {message}", file=sys.stderr, flush=True)


#: the most procedural scenes one ``seeds:A-B`` source lists
MAX_SEEDS = 1_000_000


@dataclass(frozen=True)
class ImageSource:
    """An ordered list of image ids, their sizes, and a loader for a subset of them."""

    spec: str
    ids: Tuple[str, ...]
    sizes: Tuple[Tuple[int, int], ...]
    _load: Callable[[Sequence[str]], Tuple[Tensor, Tensor]]

    def load(self, ids: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Images (N,3,H,W) float in [0,1] and labels (N,H,W) int64 of ``ids`` (same size)."""
        return self._load(ids)


def world_of(model) -> str:
    """The procedural world labelled with the model's classes."""
    world = world_of_dataset(model.dataset.name)
    if world is None:
        raise InputError(f"model {getattr(model, 'name', '?')} uses {model.dataset.name} classes, which no "
                         f"procedural world or sample set has: benchmark it on a folder of images")
    return world


def check_spec(spec: str, what: str = "image source") -> str:
    """``spec`` if it names an image source (module docstring), else InputError — without
    reading any image."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{what} must be 'samples', 'seeds:A-B' or a folder with images/ and labels/")
    if spec == "samples":
        return spec
    if spec.startswith("seeds:"):
        match = re.fullmatch(r"seeds:([0-9]{1,18})-([0-9]{1,18})", spec)
        if not match or int(match[1]) > int(match[2]):
            raise InputError(f"bad seed range {spec!r}: write seeds:A-B with A <= B, e.g. seeds:10000-10099")
        if int(match[2]) - int(match[1]) >= MAX_SEEDS:
            raise InputError(f"seed range {spec!r} holds more than {MAX_SEEDS} scenes: split it into several runs")
        return spec
    root = Path(spec)
    if root.is_dir():
        if not (root / "images").is_dir() or not (root / "labels").is_dir():
            raise InputError(f"{root} must hold images/ and labels/ folders")
        return spec
    raise InputError(f"unknown image source {spec!r}: use 'samples', 'seeds:A-B' or a folder with "
                     "images/ and labels/")


def check_limit(limit: Optional[int]) -> Optional[int]:
    """``limit`` if it is None (every image) or a whole number >= 1."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
        raise InputError(f"the image limit must be a whole number >= 1 (or none for every image); got {limit!r}")
    return int(limit)


def open_source(spec: str, model, limit: int | None = None) -> ImageSource:
    """The image source named by ``spec`` (module docstring) for ``model``, first ``limit`` images."""
    limit = check_limit(limit)
    check_spec(spec)
    if spec == "samples":
        source = _samples_source(world_of(model))
    elif spec.startswith("seeds:"):
        source = _seeds_source(spec, world_of(model))
    else:
        source = _folder_source(Path(spec), model.dataset)
    if limit is not None:
        source = ImageSource(source.spec, source.ids[:limit], source.sizes[:limit], source._load)
    if not source.ids:
        raise InputError(f"image source {spec!r} holds no image")
    return source


def _samples_source(world: str) -> ImageSource:
    names = list_samples(world)
    sizes = []
    for n in names:  # from the PNG header: the pixels are read once, when a batch runs
        with Image.open(SAMPLES_DIR / f"{n}.png") as im:
            sizes.append((im.size[1], im.size[0]))

    def load(ids):
        loaded = [load_sample(i.split("/", 1)[1]) for i in ids]
        return torch.stack([x for x, _, _ in loaded]), torch.stack([y for _, y, _ in loaded])

    return ImageSource("samples", tuple(f"samples/{n}" for n in names), tuple(sizes), load)


def _seeds_source(spec: str, world: str) -> ImageSource:
    check_spec(spec)
    match = re.fullmatch(r"seeds:([0-9]{1,18})-([0-9]{1,18})", spec)
    first, last = int(match[1]), int(match[2])
    size = WORLDS[world].train_size

    def load(ids):
        x, y = render_batch(world, [int(i.split("/", 1)[1]) for i in ids], size[0], size[1])
        return (x * 255).round() / 255, y  # 8-bit, like the shipped samples

    ids = tuple(f"seeds/{s}" for s in range(first, last + 1))
    return ImageSource(spec, ids, (tuple(size),) * len(ids), load)


def _named(path: Path, error: InputError) -> InputError:
    """``error`` with the file it is about in front of its message."""
    return InputError(f"{path}: {error}")


def _orientation_swaps(image: Image.Image) -> bool:
    """Whether the EXIF orientation in the header turns the picture by 90° (sides swapped).

    Only EXIF already read with the header is looked at (JPEG, WebP, a PNG's eXIf chunk
    before the pixels): asking Pillow for more would decode the whole picture."""
    raw = image.info.get("exif")
    if not raw:
        return False
    try:
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(0x0112) in (5, 6, 7, 8)
    except Exception:  # an unreadable EXIF block: the decoder shows the picture as stored
        return False


def header_size(path: Path, what: str = "picture") -> Tuple[int, int]:
    """(H, W) of a picture as the decoder will return it, from its header only (cheap);
    InputError naming the file when the header is damaged or the format not allowed."""
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as image:
            w, h = image.size
            swapped = _orientation_swaps(image)
    except OSError as error:
        if isinstance(error, Image.UnidentifiedImageError) or not getattr(error, "strerror", None):
            raise InputError(f"{path}: the {what} file is not a picture that can be read (PNG, JPEG, WebP, "
                             f"BMP, TIFF or GIF), or its header is damaged") from None
        raise InputError(f"{path}: cannot read the {what} ({error.strerror})") from None
    except Exception:  # a damaged header makes a plugin raise about anything
        raise InputError(f"{path}: the {what} file is not a picture that can be read (PNG, JPEG, WebP, "
                         f"BMP, TIFF or GIF), or its header is damaged") from None
    if w < 1 or h < 1:
        raise InputError(f"{path}: the {what} has no pixels ({w}x{h})")
    return (w, h) if swapped else (h, w)


def _folder_source(root: Path, dataset) -> ImageSource:
    check_spec(str(root))
    images_dir, labels_dir = root / "images", root / "labels"
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    pairs: List[Tuple[Path, Path]] = []
    for p in paths:
        label = labels_dir / f"{p.stem}.png"
        if not label.is_file():
            raise InputError(f"{p.name} has no label map {label}")
        pairs.append((p, label))
    stems = [p.stem for p in paths]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise InputError(f"{images_dir} holds several pictures named {repeated[0]} (e.g. .png and .jpg): "
                         "each image needs a name of its own")
    by_id = {f"folder/{p.stem}": pair for pair, p in zip(pairs, paths)}
    sizes = []
    for image_path, label_path in pairs:  # from the headers: the pixels are decoded when a batch runs
        (h, w), (lh, lw) = header_size(image_path, "picture"), header_size(label_path, "label map")
        if (h, w) != (lh, lw):
            raise InputError(f"{image_path.name} is {w}x{h} but its label map is {lw}x{lh}")
        sizes.append((h, w))
    size_of = dict(zip(by_id, sizes))
    noted: set = set()

    def note(path: Path, notice: str) -> None:  # each kind of change said once, with its first file
        if notice and notice not in noted:
            noted.add(notice)
            warn(f"{path}: {notice} (said once for every file it applies to)")

    def load(ids):
        xs, ys = [], []
        for i in ids:
            image_path, label_path = by_id[i]
            try:
                x, notice = decode_image_file(image_path, max_bytes=None, max_side=None)
            except InputError as error:
                raise _named(image_path, error) from None
            note(image_path, notice)
            try:
                y, notice = decode_label_file(label_path, dataset, max_bytes=None)
            except InputError as error:
                raise _named(label_path, error) from None
            note(label_path, notice)
            h, w = size_of[i]
            if tuple(x.shape[-2:]) != (h, w) or tuple(y.shape) != (h, w):
                raise InputError(f"{image_path}: decoded as {x.shape[-1]}x{x.shape[-2]} and its label map "
                                 f"{label_path.name} as {y.shape[-1]}x{y.shape[-2]}, but the headers said "
                                 f"{w}x{h}: picture and label map must have the same size and orientation")
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    return ImageSource(str(root), tuple(by_id), tuple(sizes), load)


def check_targeted(model) -> None:
    """InputError when the model's classes have no targeted setting (checked before a run starts)."""
    dataset = model.dataset
    if dataset.background_class is None and dataset.name != "cityscapes":
        raise InputError(f"no targeted setting for {dataset.name} classes (no background class, no layout): "
                         f"use --modes untargeted for {getattr(model, 'name', 'this model')}")


def attack_labels(model, labels: Tensor, mode: str) -> Tensor:
    """The labels an attack is given: the ground truth (untargeted), or the targets of the
    paper's targeted setting (:func:`explorer.data.samples.paper_target`)."""
    if mode == "untargeted":
        return labels
    check_targeted(model)
    return paper_target(labels, model.dataset)
