"""Seed splits, the shipped sample images and the shipped majority-label target."""
import os
import shutil
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.data.samples import SAMPLES_DIR, list_samples, load_sample
from explorer.data.splits import SAMPLE_SEEDS, TRAIN_SEED_START, VALIDATION_SEEDS
from explorer.data.worlds import WORLDS, render_scene
from explorer.errors import InputError


def test_seed_ranges_are_disjoint():
    assert max(SAMPLE_SEEDS) < min(VALIDATION_SEEDS)
    assert max(VALIDATION_SEEDS) < TRAIN_SEED_START


@pytest.mark.parametrize("world", ["street", "objects"])
def test_samples_exist_and_load(world):
    names = list_samples(world)
    assert len(names) >= 8
    k = WORLDS[world].dataset.num_classes
    for name in names:
        image, labels, w = load_sample(name)
        assert w == world
        assert image.dtype == torch.float32 and image.shape[0] == 3 and image.shape[1:] == labels.shape
        assert 0 <= image.min() and image.max() <= 1
        assert labels.dtype == torch.int64
        values = set(labels.unique().tolist())
        assert values <= set(range(k)) | {255} and (values - {255})


def test_samples_are_the_scenes_of_their_seeds():
    """A sample is exactly its world's render (8-bit), so it is reproducible and unseen in training."""
    name = list_samples("street")[0]
    image, labels, world = load_sample(name)
    seed = int(name.split("-")[1])
    assert seed in SAMPLE_SEEDS
    ref_image, ref_labels = render_scene(world, seed, image.shape[1], image.shape[2])
    assert torch.equal(labels, ref_labels)
    assert torch.allclose(image, (ref_image * 255).round() / 255, atol=1e-6)


def test_label_pngs_are_palette_images_with_the_dataset_colours():
    name = list_samples("objects")[0]
    png = Image.open(SAMPLES_DIR / f"{name}_labels.png")
    assert png.mode == "P"
    palette = np.asarray(png.getpalette()[: 21 * 3]).reshape(21, 3)
    assert np.array_equal(palette, np.asarray(WORLDS["objects"].dataset.palette))


@pytest.mark.parametrize("bad", ["../README", "street-000/../x", "", "nope-1", None])
def test_bad_sample_names_are_refused(bad):
    with pytest.raises(InputError):
        load_sample(bad)


def test_shipped_majority_target_matches_recipe_shape():
    from explorer.data.samples import load_majority_target

    target = load_majority_target()
    street_size = load_sample(list_samples("street")[0])[0].shape[1:]
    assert tuple(target.shape) == tuple(street_size)
    labelled = target[target < 19]
    shares = torch.bincount(labelled, minlength=19).float() / labelled.numel()
    # the layout of a street: road, building, sky, vegetation dominate; bonnet/border ignored
    assert shares[0] > 0.2 and shares[2] > 0.1
    assert (target == 255).any()
    assert (target[-1] == 255).all()  # the bottom row is bonnet / border


def test_samples_are_package_data_and_the_environment_can_point_elsewhere(tmp_path):
    """By default the samples are read from the installed package (importlib.resources);
    ``EXPLORER_SAMPLES_DIR`` names another folder of the same layout (read at import)."""
    assert SAMPLES_DIR == files("explorer.data") / "sample_images"
    other = tmp_path / "samples"
    shutil.copytree(SAMPLES_DIR, other)
    (other / "index.json").write_text('{"samples": [{"name": "street-000", "world": "street", "seed": 0}]}')
    code = ("from explorer.data.samples import SAMPLES_DIR, list_samples, majority_target_path\n"
            "print(SAMPLES_DIR, list_samples(), majority_target_path().is_file())")
    env = dict(os.environ, EXPLORER_SAMPLES_DIR=str(other), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(other), "['street-000']", "True"]
